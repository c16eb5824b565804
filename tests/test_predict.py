"""POST /predict/digit with real image files and a CNN trained in the test session."""

import base64
import io
import struct
import zlib
from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
from PIL import Image

from service.api.routes.predict import _more_accurate
from service.models.store import ModelRecord
from service.predict.decode import decode_upload, decoded_pixels
from tests.conftest import FAULTS_DB, UPLOAD_LIMIT_BYTES
from tests.photo_like import encode, photo_of_digit
from tests.stack import ServiceStack
from training.digit_images import to_mnist

SAMPLE = 40


@pytest.fixture(scope="module")
def sample(test_digits):
    return test_digits[0][:SAMPLE], test_digits[1][:SAMPLE]


def predict(stack, files, **params):
    parts = [("file", (name, data, "application/octet-stream")) for name, data in files]
    return stack.client.post("/predict/digit", files=parts, params=params, timeout=60)


def accuracy(response, labels) -> float:
    digits = [prediction["digit"] for prediction in response.json()["predictions"]]
    return float(np.mean(np.array(digits) == labels))


def test_clean_digits_are_read_as_well_as_the_model_reads_mnist(stack, digit_model, sample):
    images, labels = sample
    files = [(f"digit{i}.png", encode(image, "PNG")) for i, image in enumerate(images)]
    response = predict(stack, files, model=digit_model["id"])
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == SAMPLE
    assert all(p["model"] == {"id": digit_model["id"], "kind": "cnn"} for p in predictions)
    assert accuracy(response, labels) >= digit_model["metrics"]["test_accuracy"] - 0.1
    for prediction in predictions:
        assert sum(prediction["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert prediction["confidence"] == max(prediction["probabilities"])


def test_photo_like_uploads_are_read_nearly_as_well(stack, digit_model, sample):
    images, labels = sample
    rng = np.random.default_rng(5)
    clean = predict(stack, [(f"{i}.png", encode(im, "PNG")) for i, im in enumerate(images)],
                    model=digit_model["id"])  # fmt: skip
    photos = [
        (f"photo{i}.jpg", encode(photo_of_digit(image, rng, invert=i % 4 == 3), "JPEG", 75))
        for i, image in enumerate(images)
    ]
    response = predict(stack, photos, model=digit_model["id"])
    assert response.status_code == 200, response.text
    assert accuracy(response, labels) >= accuracy(clean, labels) - 0.15


def test_the_newest_cnn_answers_by_default(stack, digit_model, sample):
    images, _ = sample
    newest = stack.client.get("/models", params={"kind": "cnn", "limit": 1}).json()["items"][0]
    response = predict(stack, [("one.png", encode(images[0], "PNG"))])
    assert response.status_code == 200
    assert response.json()["model"]["id"] == newest["id"]


def test_every_accepted_format_and_exif_orientation(stack, digit_model, sample):
    images, _ = sample
    reference = predict(stack, [("a.png", encode(images[0], "PNG"))], model=digit_model["id"])
    expected = reference.json()["digit"]
    page = 255 - np.kron(images[0], np.ones((8, 8), np.uint8))  # dark ink on white paper
    uploads = {
        "digit.bmp": encode(page, "BMP"),
        "digit.tiff": encode(page, "TIFF"),
        "digit.webp": encode(page, "WEBP"),
        "digit.jpg": encode(page, "JPEG"),
        "rotated.jpg": _jpeg_rotated_with_exif(page),
        "animated.gif": _gif_first_frame_is(page),
        "canvas.png": _transparent_drawing(images[0]),
    }
    response = predict(stack, list(uploads.items()), model=digit_model["id"])
    assert response.status_code == 200, response.text
    assert [p["digit"] for p in response.json()["predictions"]] == [expected] * len(uploads)


def test_debug_returns_the_image_the_model_saw(stack, digit_model, sample):
    images, _ = sample
    response = predict(stack, [("x.png", encode(images[0], "PNG"))], model=digit_model["id"],
                       debug="true")  # fmt: skip
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(response.json()["image"]))))
    assert seen.shape == (28, 28)
    np.testing.assert_allclose(seen, np.clip(to_mnist(images[0]).image, 0, 255), atol=1)


@pytest.mark.parametrize(
    ("upload", "status", "words"),
    [
        (("notes.txt", b"just some text"), 415, "not an image"),
        (("big.png", b"\x89PNG" + b"0" * UPLOAD_LIMIT_BYTES), 413, "bytes"),
        (("bomb.png", None), 413, "pixels"),
        (("blank.png", encode(np.full((200, 200), 230, np.uint8), "PNG")), 422, "no digit"),
    ],
)
def test_bad_uploads_are_refused_clearly(stack, digit_model, upload, status, words):
    name, data = upload
    data = data if data is not None else _png_header_claiming(20_000, 20_000)
    response = predict(stack, [(name, data)], model=digit_model["id"])
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert name in response.json()["detail"]


def test_model_errors(stack, digit_model, sample):
    images, _ = sample
    files = [("x.png", encode(images[0], "PNG"))]
    assert predict(stack, files, model="0" * 32).status_code == 404
    svhn = stack.submit("svhn_cnn", validation_size=10, epochs=1, batch_size=16)
    svhn = stack.wait_until_finished(svhn["id"], timeout=120)
    assert svhn["status"] == "succeeded", svhn["error"]
    wrong = predict(stack, files, model=svhn["result"]["model_id"])
    assert wrong.status_code == 422
    assert "svhn_cnn" in wrong.json()["detail"] and "cnn or mlp" in wrong.json()["detail"]
    assert stack.client.post("/predict/digit").status_code == 422  # no file at all


def test_without_any_model_the_answer_says_how_to_train_one(tmp_path, sample):
    images, _ = sample
    fresh = ServiceStack(FAULTS_DB, tmp_path)
    fresh.start(worker=False)
    try:
        response = predict(fresh, [("x.png", encode(images[0], "PNG"))])
        assert response.status_code == 409
        assert "POST /presets/cnn/submit" in response.json()["detail"]
    finally:
        fresh.stop()


def _jpeg_rotated_with_exif(page: np.ndarray) -> bytes:
    """Pixels stored rotated 90 degrees, with the EXIF tag (6) that says to rotate them back."""
    stored = Image.fromarray(np.rot90(page, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    return buffer.getvalue()


def _gif_first_frame_is(page: np.ndarray) -> bytes:
    first = Image.fromarray(page)
    second = Image.fromarray(np.full_like(page, 255))
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=[second], duration=100)
    return buffer.getvalue()


def _transparent_drawing(digit: np.ndarray) -> bytes:
    """Black strokes on a transparent background, as a canvas drawing is exported."""
    big = np.kron(digit, np.ones((6, 6), np.uint8))
    rgba = np.zeros((*big.shape, 4), np.uint8)
    rgba[..., 3] = big  # only the strokes are opaque, and they are black
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _png_header_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _record(kind: str, **metrics: float) -> ModelRecord:
    return ModelRecord(id=kind * 4, kind=kind, job_id="j", params={}, metrics=metrics, files={},
                       created_at=datetime.now(UTC))  # fmt: skip


@pytest.mark.parametrize(
    ("calculator", "digit_model", "expected"),
    [
        ({"exact": 0.95}, {"exact": 0.95}, "calculator"),  # a tie: the calculator
        ({"exact": 0.96}, {"exact": 0.95}, "calculator"),
        ({"exact": 0.94}, {"exact": 0.95}, "digit-model"),
        ({"exact": 0.99, "sequences": 200}, {"exact": 0.95}, "digit-model"),  # fewer sequences
        ({"exact": 0.99, "old": True}, {"exact": 0.95}, "digit-model"),  # measured another way
    ],
)
def test_auto_sums_compare_only_comparable_measurements(calculator, digit_model, expected):
    def metrics(spec: dict) -> dict:
        values = {"test_exact_sum_accuracy": spec["exact"],
                  "test_sequences": spec.get("sequences", 1000)}  # fmt: skip
        if not spec.get("old"):
            values["test_all_cumulative_exact"] = spec["exact"]
        return values

    found = {
        "calculator": _record("calculator", **metrics(calculator)),
        "digit-model": _record("cnn", **metrics(digit_model)),
    }
    record, method = _more_accurate(found)
    assert method == expected
    assert record is found[expected]
    only = {"calculator": found["calculator"]}
    assert _more_accurate(only) == (found["calculator"], "calculator")


def test_large_jpegs_decode_at_reduced_scale_into_the_same_28x28_image(mnist_path):
    """A photo over preparation's working size decodes at 1/2..1/8 scale (as many pixels as
    the request budget counted) and prepares to what the full decode prepares to."""
    rng = np.random.default_rng(0)
    with np.load(mnist_path) as data:
        digits = data["x_test"][:3]
    for digit in digits:
        photo = photo_of_digit(digit, rng)
        large = cv2.resize(photo, (photo.shape[1] * 4, photo.shape[0] * 4))
        upload = encode(large, "JPEG")
        drafted = decode_upload(upload, "photo.jpg", 10**9, 10**9)
        full = np.asarray(Image.open(io.BytesIO(upload)).convert("L"))
        assert drafted.size == decoded_pixels(upload) < full.size
        difference = np.abs(to_mnist(drafted).image - to_mnist(full).image)
        assert difference.mean() < 1.0  # of 255
