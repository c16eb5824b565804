"""The job records and requests the API reads and writes."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATUSES


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobSubmission(BaseModel):
    """A request to run a job: its kind and that kind's parameters (defaults fill the rest)."""

    kind: str = Field(description="A job kind from GET /jobs/kinds, e.g. 'backprop'.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The kind's parameters; omitted ones take defaults."
    )

    model_config = {
        "json_schema_extra": {
            "examples": [{"kind": "backprop", "params": {"activation": "tanh", "steps": 10}}]
        }
    }


class WorkerInfo(BaseModel):
    hostname: str
    pid: int


class JobRecord(BaseModel):
    """Everything known about one job."""

    id: str
    kind: str
    status: JobStatus
    params: dict[str, Any]
    progress: dict[str, Any] | None = None
    result: Any = None
    error: str | None = None
    cancel_requested: bool = False
    worker: WorkerInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[JobRecord]
    total: int = Field(description="How many jobs match the filters in all.")
    limit: int
    offset: int


class JobKindInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any] = Field(description="JSON Schema of the kind's parameters.")
