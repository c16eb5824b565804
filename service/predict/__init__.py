"""Predictions from stored models: decoding uploads, choosing and caching models, answering."""
