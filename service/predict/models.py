"""Which stored model answers a prediction, and each model loaded once per process."""

from __future__ import annotations

import threading
from typing import Any

from service.errors import ConflictError, ServiceError
from service.models.store import ModelRecord, ModelStore

DIGIT_KINDS = ("cnn", "mlp")


class WrongModelKind(ServiceError):
    status_code = 422
    code = "wrong_model_kind"


def resolve_digit_model(store: ModelStore, reference: str | None) -> ModelRecord:
    """The model named by `reference`, or the newest `cnn` model when none is named."""
    if reference:
        record = store.get(reference)
        if record.kind not in DIGIT_KINDS:
            raise WrongModelKind(
                f"Model {record.id!r} is a {record.kind!r} model; digit predictions need one of "
                f"kind {' or '.join(DIGIT_KINDS)}. List them with GET /models?kind=cnn."
            )
        return record
    newest, _ = store.list(kind="cnn", limit=1)
    if not newest:
        raise ConflictError(
            "No digit model has been trained yet. Train one with POST /presets/cnn/submit (or "
            'POST /jobs with {"kind": "cnn"}), wait for the job to succeed, and try again.'
        )
    return newest[0]


class ModelCache:
    """Keras models by id, each loaded from the model store once and kept in memory."""

    def __init__(self, store: ModelStore) -> None:
        self.store = store
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, record: ModelRecord) -> Any:
        with self._lock:
            if record.id not in self._models:
                self._models[record.id] = self._load(record)
            return self._models[record.id]

    def _load(self, record: ModelRecord) -> Any:
        # TensorFlow is imported here, on first use, never on the API's queueing path.
        import keras

        from training import activations, calculator  # noqa: F401  registers custom objects

        path = self.store.file_path(record, "keras")
        return keras.saving.load_model(path, safe_mode=True)
