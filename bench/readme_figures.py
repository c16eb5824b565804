"""The figures the README shows, drawn by the service's own plotting code.

- docs/images/compute_graph.png: `GET /jobs/{id}/plots/graph.png` of a backprop job with the
  kind's default parameters (the course's network, one gradient-descent step).

    python bench/readme_figures.py
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from service.jobs.params import BackpropParams  # noqa: E402
from service.plots.figures import compute_graph  # noqa: E402
from service.plots.png import to_png  # noqa: E402
from training.graph.course_network import train_course_network  # noqa: E402

IMAGES = REPO_ROOT / "docs" / "images"


def main() -> None:
    result = train_course_network(**BackpropParams().model_dump())
    IMAGES.mkdir(parents=True, exist_ok=True)
    path = IMAGES / "compute_graph.png"
    path.write_bytes(to_png(compute_graph("(default parameters)", result["nodes"])))
    print(f"written: {path.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
