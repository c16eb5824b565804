"""How a training run reports progress and learns that it should stop, without knowing who asks."""

from typing import Any, Protocol


class TrainingCancelled(Exception):
    """Raised inside a training run when its caller asked it to stop."""


class ProgressReporter(Protocol):
    """What a training function calls while it runs. The service supplies one backed by Redis."""

    def report(self, **progress: Any) -> None:
        """Record where the run is, e.g. `report(epoch=2, epochs=10, batch=50, batches=469)`."""

    def check_cancelled(self) -> None:
        """Raise `TrainingCancelled` if the run should stop now."""

    def record_epoch(self, entry: dict[str, Any]) -> None:
        """Append one finished epoch's losses, metrics, learning rate and duration."""

    def record_gradients(self, entry: dict[str, Any]) -> None:
        """Append per-layer gradient statistics measured at one epoch (0 = untrained)."""


class SilentReporter:
    """A reporter for direct library use: records nothing and never cancels."""

    def report(self, **progress: Any) -> None:
        pass

    def check_cancelled(self) -> None:
        pass

    def record_epoch(self, entry: dict[str, Any]) -> None:
        pass

    def record_gradients(self, entry: dict[str, Any]) -> None:
        pass


class RecordingReporter(SilentReporter):
    """Keeps everything reported in memory: for notebooks, scripts and tests."""

    def __init__(self) -> None:
        self.progress: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        self.gradients: list[dict[str, Any]] = []

    def report(self, **progress: Any) -> None:
        self.progress.append(progress)

    def record_epoch(self, entry: dict[str, Any]) -> None:
        self.history.append(entry)

    def record_gradients(self, entry: dict[str, Any]) -> None:
        self.gradients.append(entry)
