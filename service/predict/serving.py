"""What every prediction needs from its process, in one object."""

from __future__ import annotations

from dataclasses import dataclass

from service.gates import Gate
from service.predict.models import ModelCache, ModelResolver
from service.settings import Settings


@dataclass(frozen=True)
class Serving:
    """The model resolver and cache, the settings and the gate for large images, as one
    dependency of the prediction routes: FastAPI's work per dependency, per request, made four
    of them a tenth of a 28x28 upload's cost."""

    resolver: ModelResolver
    cache: ModelCache
    settings: Settings
    gate: Gate
