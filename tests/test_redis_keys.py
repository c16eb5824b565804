"""Redis key names live in `service/redis_keys.py`; their strings never change, since stored
data is read by them."""

import re
from pathlib import Path

from service import redis_keys

SERVICE = Path(__file__).resolve().parents[1] / "service"
# A string literal that starts with one of the service's key prefixes and a colon.
KEY_LITERAL = re.compile(
    r"""['"](job|jobs|model|models|sweep|sweeps|workers|bootstrap|reconciler|idempotency):"""
)


def test_the_key_names_are_those_stored_data_is_read_by() -> None:
    model_id, job_id = "a" * 32, "b" * 32
    assert redis_keys.model_key(model_id) == f"model:{model_id}"
    assert redis_keys.models_by_kind("cnn") == "models:kind:cnn"
    assert redis_keys.MODELS_ALL == "models:all"
    assert redis_keys.MODELS_ALIASES == "models:aliases"
    assert redis_keys.MODELS_CHANGED_CHANNEL == "models:changed"
    assert redis_keys.job_key(job_id) == f"job:{job_id}"
    assert redis_keys.job_series_key(job_id, "history") == f"job:{job_id}:history"
    assert redis_keys.jobs_by_status("queued") == "jobs:status:queued"
    assert redis_keys.sweep_key(job_id) == f"sweep:{job_id}"
    assert redis_keys.worker_key("w@h") == "workers:w@h"
    assert redis_keys.LIVE_WORKERS == "workers:live"
    assert (redis_keys.CELERY_UNACKED, redis_keys.CELERY_UNACKED_INDEX) == (
        "unacked",
        "unacked_index",
    )


def test_no_other_module_of_the_service_spells_a_key_name() -> None:
    spelled = [
        f"{path.relative_to(SERVICE)}:{number}: {line.strip()}"
        for path in sorted(SERVICE.rglob("*.py"))
        if path.name != "redis_keys.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if KEY_LITERAL.search(line)
    ]
    assert spelled == [], "Key names belong in service/redis_keys.py:\n" + "\n".join(spelled)
