"""The requirements of .venv-peers (`make bench-peers`): the project's dependencies and
BentoML, in a virtualenv of their own because BentoML's dependencies would change packages the
service's .venv holds (an older opentelemetry-api, which FastAPI requires).

The packages that run the model and prepare the images are pinned to the versions in .venv, so
that the peers and the service compute with the same code. Run by the new venv's Python:

    .venv-peers/bin/python bench/peers/requirements.py [.venv] > requirements.txt
"""

from __future__ import annotations

import importlib.metadata
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BENTOML = "bentoml>=1.4,<1.5"
SAME_AS_SERVICE = (
    "tensorflow",
    "keras",
    "numpy",
    "ai-edge-litert",
    "opencv-python-headless",
    "pillow",
)


def project_dependencies() -> list[str]:
    """pyproject.toml's [project] dependencies."""
    with (REPO_ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]["dependencies"]


def service_versions(venv: Path) -> dict[str, str]:
    """Installed versions of SAME_AS_SERVICE in `venv`, by name."""
    paths = [str(path) for path in venv.glob("lib/python*/site-packages")]
    versions = {}
    for distribution in importlib.metadata.distributions(path=paths):
        name = distribution.metadata["Name"].lower()
        if name in SAME_AS_SERVICE:
            versions[name] = distribution.version
    return versions


def main() -> None:
    venv = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / ".venv"
    print("\n".join([*project_dependencies(), BENTOML]))
    for name, version in sorted(service_versions(venv).items()):
        print(f"{name}=={version}")


if __name__ == "__main__":
    main()
