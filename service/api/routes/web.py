"""The web page at `/`: plain HTML, CSS and JavaScript, no build step."""

from functools import cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from training.data.sequences import DOUBTFUL_BELOW

STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "static"

router = APIRouter(include_in_schema=False)


@cache
def page() -> str:
    """index.html with the service's own figures the page shows (read once per process)."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return html.replace("{{DOUBTFUL_BELOW}}", str(DOUBTFUL_BELOW))


@router.get("/")
def index() -> HTMLResponse:
    return HTMLResponse(page())
