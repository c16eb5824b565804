"""BentoML 1.4 serving the service's digit model: POST /predict/digit with a multipart `file`,
answered as bench/naive_server.py answers.

Same model file (MODEL_PATH), loaded and run as the service runs it
(`read_stored_model`, `compiled_predict`), and the same preparation (`decode_upload`,
`to_mnist`), so that only the serving differs. Two layouts:

- `DigitFront`: BentoML's recommended layout for adaptive batching: a front service that
  decodes and prepares each upload and calls a separate model service whose API is batchable
  (`DigitModel`, via `bentoml.depends`). `bentoml serve bench.peers.bento_digits:DigitFront`
  starts both.
- `DigitPlain`: one service, PEER_WORKERS processes (default 2), no batching: each request is
  prepared and predicted alone.

Runs in .venv-peers (`make bench-peers`); bench/predict_load.py starts it.
"""

from __future__ import annotations

import os
from pathlib import Path

import bentoml
import cv2
import numpy as np

from service.predict.decode import decode_upload
from service.predict.models import compiled_predict, read_stored_model
from service.settings import Settings
from training.digit_images import to_mnist

MAX_UPLOAD_BYTES = 20_000_000  # the service's defaults, as in bench/naive_server.py
MAX_IMAGE_PIXELS = 64_000_000
MAX_BATCH = 64  # the service's PREDICT_MAX_BATCH
WORKERS = int(os.environ.get("PEER_WORKERS", "2"))
TRAFFIC = {"timeout": 120}
# No access log: the service logs none by default either (it took about 5% of its time).
LOGGING = {"access": {"enabled": False}}
# The front's client renews its session to the model service every 100 requests by default,
# and requests still in flight on the old one fail (BentoML 1.4.30 on; bentoml/BentoML#5540,
# #5544): at concurrency 32, about 1 request in 12. Renewed never within a bench run instead.
CONNECTION = {"max_requests": 1_000_000_000, "max_age": 86_400.0}


def load_predict():
    """The model at MODEL_PATH as the service runs it."""
    # One OpenCV thread, as in each API process: its pool only spun between calls.
    cv2.setNumThreads(1)
    model = read_stored_model(Path(os.environ["MODEL_PATH"]))
    return compiled_predict(model, Settings().serve_quantized)  # the runtime the service runs


def prepared(file: Path) -> np.ndarray:
    """An uploaded image file as the model's input, prepared as the service prepares it."""
    gray = decode_upload(file.read_bytes(), file.name, MAX_UPLOAD_BYTES, MAX_IMAGE_PIXELS)
    return to_mnist(gray).image


def answer(probabilities: np.ndarray) -> dict:
    return {
        "digit": int(np.argmax(probabilities)),
        "probabilities": [float(p) for p in probabilities],
        "confidence": float(np.max(probabilities)),
    }


@bentoml.service(workers=1, traffic=TRAFFIC, logging=LOGGING, runner_connection=CONNECTION)
class DigitModel:
    """The model behind BentoML's adaptive batching: one process, batches of up to 64."""

    def __init__(self) -> None:
        self.predict_batch = load_predict()

    @bentoml.api(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH)
    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.predict_batch(images)


@bentoml.service(workers=WORKERS, traffic=TRAFFIC, logging=LOGGING)
class DigitFront:
    """Decodes and prepares each upload; the model service batches the predictions."""

    model = bentoml.depends(DigitModel)

    def __init__(self) -> None:
        cv2.setNumThreads(1)

    @bentoml.api(route="/predict/digit")
    async def predict_digit(self, file: Path) -> dict:
        probabilities = await self.model.to_async.predict(prepared(file)[np.newaxis])
        return answer(probabilities[0])


@bentoml.service(workers=WORKERS, traffic=TRAFFIC, logging=LOGGING)
class DigitPlain:
    """Each request prepared and predicted alone, in one of WORKERS processes."""

    def __init__(self) -> None:
        self.predict_batch = load_predict()

    @bentoml.api(route="/predict/digit")
    def predict_digit(self, file: Path) -> dict:
        return answer(self.predict_batch(prepared(file)[np.newaxis])[0])
