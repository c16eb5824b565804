"""Model names of the serving protocols (TF Serving's REST API, KServe v2): an alias, a model
id, or a kind (`cnn`, `mlp`, `calculator`), which names its newest model."""

from __future__ import annotations

from service.models.store import ModelRecord
from service.predict.models import DIGIT_TASK, SUM_TASK, ModelResolver, Task

# Tasks by model name: a kind names its newest model (kinds cannot be aliases).
KIND_TASKS = {
    "cnn": DIGIT_TASK,
    "mlp": Task(DIGIT_TASK.name, ("mlp",), preset="mlp-500-300"),
    "calculator": SUM_TASK,
}
ANY_SERVED_MODEL = Task("TF Serving and KServe v2 predictions", tuple(KIND_TASKS), preset="cnn")


async def resolve_served(resolver: ModelResolver, name: str) -> ModelRecord:
    """The stored model a protocol's model name names."""
    if name in KIND_TASKS:
        return await resolver.resolve(KIND_TASKS[name], None)
    return await resolver.resolve(ANY_SERVED_MODEL, name)
