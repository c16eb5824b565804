"""The prediction both serving protocols (TF Serving's REST API, KServe v2) make once a request's
rows are read: its instances checked for size, prepared and run through the model's batcher."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.predict.batching import Outputs
from service.predict.instances import image_count, instances_to_array, uploads_in
from service.predict.models import LoadedModel
from service.predict.reading import check_request_size, prepare_where_fit
from service.predict.serving import Serving


async def predict_instances(
    loaded: LoadedModel,
    read_instances: Callable[[], list[Any]],
    sequence: bool,
    serving: Serving,
) -> Outputs:
    """The model's outputs for the instances `read_instances` gives (arrays, image files, or
    sequences of either: `instances_to_array`'s), read while the batcher waits for them."""
    with loaded.batcher.arriving():
        instances = read_instances()
        uploads = uploads_in(instances)
        check_request_size(uploads, image_count(len(instances), sequence), serving.settings)
        inputs = await prepare_where_fit(
            serving.gate,
            uploads,
            len(instances),
            instances_to_array,
            instances,
            sequence,
            serving.settings,
        )
    return await loaded.batcher.outputs(inputs)
