"""Stored models: list, inspect, download, delete, and name them with aliases."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from service.api.deps import (
    KindFilter,
    Limit,
    ModelCacheDep,
    ModelResolverDep,
    ModelStoreDep,
    Offset,
    WriteAccess,
)
from service.api.errors import ERROR_RESPONSES
from service.jobs.kinds import get_kind
from service.models.store import ModelFormat, ModelRecord

router = APIRouter(prefix="/models", tags=["models"], responses=ERROR_RESPONSES)

ModelPath = Annotated[str, Path(description="A model id or an alias.")]
MEDIA_TYPES = {"keras": "application/zip", "h5": "application/x-hdf5"}


class ModelPage(BaseModel):
    items: list[ModelRecord]
    total: int
    limit: int
    offset: int
    aliases: dict[str, str] = Field(description="Every alias and the model id it names.")


class AliasChange(BaseModel):
    alias: str
    model_id: str = Field(description="The model the alias names now (or named, once deleted).")
    previous_model_id: str | None = Field(
        None, description="The model the alias named before it was moved, if it was."
    )


@router.get("", response_model=ModelPage)
def list_models(
    store: ModelStoreDep,
    kind: KindFilter = None,
    limit: Limit = 20,
    offset: Offset = 0,
) -> ModelPage:
    """List stored models, newest first, optionally only those of one kind."""
    if kind is not None:
        get_kind(kind, location=("query", "kind"))
    items, total = store.list(kind=kind, limit=limit, offset=offset)
    return ModelPage(items=items, total=total, limit=limit, offset=offset, aliases=store.aliases())


@router.delete("/aliases/{alias}", response_model=AliasChange, dependencies=[WriteAccess])
def delete_alias(alias: str, store: ModelStoreDep, resolver: ModelResolverDep) -> AliasChange:
    """Remove an alias. The model it named stays stored."""
    model_id = store.delete_alias(alias)
    resolver.forget()
    return AliasChange(alias=alias, model_id=model_id)


@router.get("/{model}", response_model=ModelRecord)
def get_model(model: ModelPath, store: ModelStoreDep) -> ModelRecord:
    """Get one model: its kind, the job that trained it, its params, test metrics and aliases."""
    return store.resolve(model)


@router.delete("/{model}", status_code=204, dependencies=[WriteAccess])
def delete_model(
    model_id: Annotated[str, Path(alias="model", description="The model's id (not an alias).")],
    store: ModelStoreDep,
    resolver: ModelResolverDep,
    cache: ModelCacheDep,
) -> Response:
    """Delete a model: its record and its files. Refused (409) while an alias names it. Every
    API process unloads it; the job that trained it stays, its `model_id` then answers 404."""
    store.delete(model_id)
    resolver.forget()
    cache.discard(model_id)
    return Response(status_code=204)


@router.put("/{model}/aliases/{alias}", response_model=AliasChange, dependencies=[WriteAccess])
def set_alias(
    model: ModelPath, alias: str, store: ModelStoreDep, resolver: ModelResolverDep
) -> AliasChange:
    """Point an alias at a model (moving it if it named another). `?model=<alias>` and
    `/v1/models/<alias>` use that model from the next request on. The model may itself be
    named by an alias: PUT /models/staging/aliases/production promotes staging's model."""
    record = store.resolve(model)
    previous = store.set_alias(alias, record.id)
    resolver.forget()
    return AliasChange(alias=alias, model_id=record.id, previous_model_id=previous)


@router.get(
    "/{model}/download",
    response_class=FileResponse,
    responses={200: {"content": {media: {} for media in MEDIA_TYPES.values()}}},
)
def download_model(
    model: ModelPath,
    store: ModelStoreDep,
    format: Annotated[ModelFormat, Query(description="keras (native) or h5.")] = "keras",
) -> FileResponse:
    """Download the model file in Keras' native format or as .h5."""
    record = store.resolve(model)
    return FileResponse(
        store.file_path(record, format),
        media_type=MEDIA_TYPES[format],
        filename=f"{record.kind}-{record.id}.{format}",
    )
