"""Render a matplotlib figure to PNG bytes (Agg, headless)."""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100


def to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)  # attaches itself to the figure
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
