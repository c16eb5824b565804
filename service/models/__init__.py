"""Stored models: files under ARTIFACTS_DIR/models and their records in Redis."""
