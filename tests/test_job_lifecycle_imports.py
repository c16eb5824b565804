"""Queueing work never loads the worker's start-up hooks, and the task names import alone."""

from tests.test_process_boundaries import modules_loaded_after


def test_the_api_does_not_import_the_workers_hooks():
    loaded = modules_loaded_after("import service.main, service.jobs.queue")
    assert "service.worker.hooks" not in loaded
    assert "service.worker.tasks" not in loaded


def test_task_names_import_without_celery():
    loaded = modules_loaded_after("import service.jobs.task_names")
    assert "celery" not in loaded
