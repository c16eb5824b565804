"""The Celery worker: its app, thin tasks, and the runner that drives a job through the store."""
