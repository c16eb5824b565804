"""Request examples for the API document: a real image of a digit, so that "Try it out" in
/docs gets a real answer."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def _digit_png_base64() -> str:
    """A 28x28 PNG of a 7, white on black as MNIST's digits are, base64-encoded."""
    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).line([(8, 7), (20, 7), (12, 22)], fill=255, width=3)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


DIGIT_PNG_BASE64 = _digit_png_base64()
