"""The Celery task names by which the API queues work and the worker registers it.

Their own module, free of Celery and of the worker's start-up hooks, so that the API, the plots
and the worker all import them without importing one another (no import cycle).
"""

RUN_JOB_TASK = "service.run_job"
