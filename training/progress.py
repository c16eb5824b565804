"""How a training run reports progress and learns that it should stop, without knowing who asks."""

from typing import Any, Protocol


class TrainingCancelled(Exception):
    """Raised inside a training run when its caller asked it to stop."""


class ProgressReporter(Protocol):
    """What a training function calls between steps. The service supplies one backed by Redis."""

    def report(self, **progress: Any) -> None:
        """Record where the run is, e.g. `report(step=3, steps=10, loss=0.5)`."""

    def check_cancelled(self) -> None:
        """Raise `TrainingCancelled` if the run should stop now."""


class SilentReporter:
    """A reporter for direct library use: records nothing and never cancels."""

    def report(self, **progress: Any) -> None:
        pass

    def check_cancelled(self) -> None:
        pass
