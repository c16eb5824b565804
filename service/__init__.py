"""HTTP service: API, settings, Celery worker and the job store."""
