"""Uploaded image files -> grayscale arrays, with limits checked before any full decode."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ServiceError
from training.digit_images import WORK_SIZE

ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF")
# What Pillow's readers raise on malformed files.
MALFORMED = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, struct.error)


class UnsupportedImage(ServiceError):
    status_code = 415
    code = "unsupported_image"


class ImageTooLarge(ServiceError):
    status_code = 413
    code = "image_too_large"


def decode_upload(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """The upload as a 2-D uint8 grayscale array, upright, transparency shown as white paper.

    Raises `ImageTooLarge` for too many bytes or pixels (read from the header, before the
    pixels are decoded, so a decompression bomb costs nothing) and `UnsupportedImage` for
    anything that is not an image in an accepted format.
    """
    if len(data) > max_bytes:
        raise ImageTooLarge(
            f"{name!r} is {len(data):,} bytes; uploads may be at most {max_bytes:,} bytes. "
            "Send a smaller or more compressed image."
        )
    plain = _plain_gray_png(data, max_pixels)
    if plain is not None:
        return plain
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                raise UnidentifiedImageError(image.format)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"{name!r} is {width}x{height} pixels; images may have at most "
                    f"{max_pixels:,} pixels. Downscale it before uploading."
                )
            if image.format == "JPEG":
                image.draft(image.mode, _draft_size(width, height))
            image.seek(0)  # the first frame of an animation
            image = ImageOps.exif_transpose(image)
            return _to_gray(image)
    except MALFORMED as error:
        raise UnsupportedImage(
            f"{name!r} is not an image this service can read ({error or 'unknown format'}). "
            f"Send one of: {', '.join(ACCEPTED_FORMATS)}."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(
            f"{name!r} declares more pixels than any upload may have ({max_pixels:,})."
        ) from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GRAY_8_BIT = b"\x08\x00"  # IHDR's bit depth and colour type
# OpenCV warns on stderr of every broken file it is given; a client's broken upload gets its
# own 415 (from Pillow) instead.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


# Chunks that change nothing Pillow's path does: orientation (eXIf, or EXIF and XMP in text
# chunks) and animation (acTL: OpenCV gives the first frame, Pillow the still image) are not
# among them, so such files go through Pillow.
PLAIN_CHUNKS = frozenset(
    {b"IHDR", b"IDAT", b"IEND", b"gAMA", b"sRGB", b"cHRM", b"pHYs", b"sBIT", b"tIME", b"bKGD",
     b"tRNS"}
)  # fmt: skip


# The PNG specification's lengths of the plain chunks that have one.
FIXED_LENGTHS = {b"IHDR": 13, b"IEND": 0, b"gAMA": 4, b"sRGB": 1, b"cHRM": 32, b"pHYs": 9,
                 b"tIME": 7}  # fmt: skip


def _only_plain_chunks(data: bytes) -> bool:
    """Whether every chunk of the PNG is one of PLAIN_CHUNKS, each with its right length and
    CRC (walked by their lengths): libpng only warns of a broken optional chunk, which Pillow
    refuses."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        if kind not in PLAIN_CHUNKS or FIXED_LENGTHS.get(kind, length) != length:
            return False
        end = position + 8 + length
        if data[end : end + 4] != zlib.crc32(data[position + 4 : end]).to_bytes(4, "big"):
            return False
        if kind == b"IEND":
            return True
        position += 12 + length
    return False  # no IEND: Pillow says what is wrong


def _plain_gray_png(data: bytes, max_pixels: int) -> np.ndarray | None:
    """An 8-bit grayscale PNG of plain chunks (MNIST's form, many scans) decoded by OpenCV, which
    gives Pillow's pixels in a tenth of the time; None for anything else, or anything OpenCV
    cannot read (Pillow then decodes it, or says why it cannot)."""
    if not (data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR"):
        return None
    if data[24:26] != GRAY_8_BIT or not _only_plain_chunks(data):
        return None
    pixels = decoded_pixels(data)
    if pixels is None or not 0 < pixels <= max_pixels:
        return None
    gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return gray if gray is not None and gray.size == pixels else None


def decoded_pixels(data: bytes) -> int | None:
    """How many pixels `decode_upload` decodes, from the image's header alone (a large JPEG at
    its reduced scale); None if no header can be read."""
    if data.startswith(PNG_SIGNATURE) and data[12:16] == b"IHDR":
        # Read directly: the common small upload, on every request (PIL's open costs 5x more).
        return int.from_bytes(data[16:20], "big") * int.from_bytes(data[20:24], "big")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Exception:  # anything unreadable is judged, with a clear error, by decode_upload
        return None
    width, height = image.size
    if image.format == "JPEG":
        width, height = _draft_size(width, height)
    return width * height


def _draft_size(width: int, height: int) -> tuple[int, int]:
    """The size a JPEG decodes at, scaled by 1/2, 1/4 or 1/8 (as its decoder can, almost for
    free) while its longer side stays at least WORK_SIZE: preparation shrinks it to that first
    anyway, so a 48 Mpx photo costs what a 3 Mpx one does."""
    scale = 1
    while scale < 8 and max(width, height) // (scale * 2) >= WORK_SIZE:
        scale *= 2
    return -(-width // scale), -(-height // scale)


def _to_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return np.asarray(image.convert("L"))
