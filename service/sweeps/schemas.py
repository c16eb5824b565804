"""The sweep requests and records the API reads and writes."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from service.jobs.schemas import JobStatus, JobSubmission

MAX_SWEEP_JOBS = 100
MAX_REPLICATES = 10


class SweepSubmission(BaseModel):
    """A base job, a grid of parameter values to vary, and how often to repeat each cell."""

    base: JobSubmission
    grid: dict[str, list[Any]] = Field(
        description="Parameter name -> the values to try; every combination is one cell.",
        min_length=1,
    )
    replicates: int = Field(
        1, ge=1, le=MAX_REPLICATES, description="Runs per cell; replicate r uses seed base + r."
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "base": {"kind": "mlp", "params": {"width": 512, "epochs": 10}},
                    "grid": {"depth": [1, 2, 3], "activation": ["sigmoid", "relu"]},
                    "replicates": 1,
                }
            ]
        }
    }


class SweepJob(BaseModel):
    job_id: str
    cell: dict[str, Any]
    replicate: int
    status: JobStatus | None = None


class MetricSummary(BaseModel):
    mean: float
    std: float = Field(description="Population standard deviation over replicates.")
    count: int


class CellSummary(BaseModel):
    cell: dict[str, Any]
    jobs: int
    succeeded: int
    metrics: dict[str, MetricSummary] = Field(
        description="Final numeric results over succeeded replicates (final_* from the history)."
    )


class SweepRecord(BaseModel):
    id: str
    kind: str
    base_params: dict[str, Any]
    grid: dict[str, list[Any]]
    replicates: int
    created_at: datetime
    jobs: list[SweepJob]
    cells: list[CellSummary] = []
    status: str = Field("", description="queued, running, or finished once every job has.")


class SweepPage(BaseModel):
    items: list[SweepRecord]
    total: int
    limit: int
    offset: int
