"""TensorFlow stays out of the API and the worker's parent; training/ never imports service/."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.stack import REPO_ROOT


def modules_loaded_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(completed.stdout.split())


def test_the_api_and_the_worker_parent_do_not_import_tensorflow():
    loaded = modules_loaded_after(
        "import service.main, service.worker.celery_app, service.worker.tasks, "
        "service.worker.runner, service.launcher"
    )
    assert "service.worker.tasks" in loaded  # the worker's task module really was imported
    assert "tensorflow" not in loaded
    assert "keras" not in loaded


def test_training_never_imports_service():
    for path in Path(REPO_ROOT, "training").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(name.split(".")[0] == "service" for name in names), path
