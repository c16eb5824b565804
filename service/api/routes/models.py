"""Stored models: list, inspect and download."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel

from service.api.deps import ModelStoreDep
from service.api.errors import ERROR_RESPONSES
from service.jobs.kinds import get_kind
from service.models.store import ModelFormat, ModelRecord

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)

MEDIA_TYPES = {"keras": "application/zip", "h5": "application/x-hdf5"}


class ModelPage(BaseModel):
    items: list[ModelRecord]
    total: int
    limit: int
    offset: int


@router.get("", response_model=ModelPage)
def list_models(
    store: ModelStoreDep,
    kind: Annotated[str | None, Query(description="Only models of this job kind.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ModelPage:
    """List stored models, newest first, optionally only those of one kind."""
    if kind is not None:
        get_kind(kind, location=("query", "kind"))
    items, total = store.list(kind=kind, limit=limit, offset=offset)
    return ModelPage(items=items, total=total, limit=limit, offset=offset)


@router.get("/{model_id}", response_model=ModelRecord)
def get_model(model_id: str, store: ModelStoreDep) -> ModelRecord:
    """Get one model: its kind, the job that trained it, its params and test metrics."""
    return store.get(model_id)


@router.get(
    "/{model_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
)
def download_model(
    model_id: str,
    store: ModelStoreDep,
    format: Annotated[ModelFormat, Query(description="keras (native) or h5.")] = "keras",
) -> FileResponse:
    """Download the model file in Keras' native format or as .h5."""
    record = store.get(model_id)
    return FileResponse(
        store.file_path(record, format),
        media_type=MEDIA_TYPES[format],
        filename=f"{record.kind}-{record.id}.{format}",
    )
