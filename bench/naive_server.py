"""The baseline for bench/predict_load.py: FastAPI calling `model.predict` once per request.

Same model file, same image decoding and preprocessing as the service; only the serving
differs (no micro-batching, no compiled graph). Run: MODEL_PATH=... uvicorn bench.naive_server:app
"""

from __future__ import annotations

import os

import keras
import numpy as np
from fastapi import FastAPI, UploadFile

from service.predict.decode import decode_upload
from training import activations, calculator  # noqa: F401  registers custom objects
from training.digit_images import to_mnist

app = FastAPI()
model = keras.saving.load_model(os.environ["MODEL_PATH"], safe_mode=True)


@app.post("/predict/digit")
def predict_digit(file: UploadFile) -> dict:
    gray = decode_upload(file.file.read(), file.filename or "upload", 20_000_000, 64_000_000)
    probabilities = model.predict(to_mnist(gray).image[np.newaxis], verbose=0)[0]
    return {
        "digit": int(np.argmax(probabilities)),
        "probabilities": [float(p) for p in probabilities],
        "confidence": float(np.max(probabilities)),
    }
