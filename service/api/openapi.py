"""The OpenAPI document, exact where FastAPI's own cannot be, with links between operations.

A job submission and a sweep are checked kind by kind at run time (so that each error names the
kind and the parameter), so their request models take any `params` and `grid`. The document
gives each kind's schema instead: a job is one of the kinds' jobs (told apart by `kind`), a
sweep one of the kinds' sweeps, whose grid names that kind's parameters, each with a list of
values of the parameter's own schema.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field, TypeAdapter, create_model

from service.jobs.kinds import JOB_KINDS, JobKind
from service.jobs.schemas import JobSubmission
from service.sweeps.schemas import MAX_REPLICATES, SweepSubmission

REF_TEMPLATE = "#/components/schemas/{model}"


def install(app: FastAPI) -> None:
    """Serve `document(app)` as the app's OpenAPI document (built once, when first asked)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with JobSubmission and SweepSubmission as unions over the kinds."""
    spec = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas["JobSubmission"] = _described(job_union(schemas), JobSubmission)
    schemas["SweepSubmission"] = _described(sweep_union(schemas), SweepSubmission)
    add_links(spec)
    return spec


# What a client does next with what it created: (operation, status) -> link name -> (the
# operation it leads to, its parameters from the answer). A job's plots and TensorBoard logs
# are left out: they exist for some kinds only, and once the job has run.
LINKS = {
    ("post /jobs", "202"): {
        "GetJob": ("get /jobs/{job_id}", {"job_id": "$response.body#/id"}),
        "JobHistory": ("get /jobs/{job_id}/history", {"job_id": "$response.body#/id"}),
        "JobGradients": ("get /jobs/{job_id}/gradients", {"job_id": "$response.body#/id"}),
        "CancelJob": ("post /jobs/{job_id}/cancel", {"job_id": "$response.body#/id"}),
        "DeleteJob": ("delete /jobs/{job_id}", {"job_id": "$response.body#/id"}),
    },
    ("post /sweeps", "202"): {
        "GetSweep": ("get /sweeps/{sweep_id}", {"sweep_id": "$response.body#/id"}),
        "CancelSweep": ("post /sweeps/{sweep_id}/cancel", {"sweep_id": "$response.body#/id"}),
    },
    ("put /models/{model}/aliases/{alias}", "200"): {
        "GetModelByAlias": ("get /models/{model}", {"model": "$response.body#/alias"}),
        "DeleteAlias": ("delete /models/aliases/{alias}", {"alias": "$response.body#/alias"}),
    },
}


def add_links(spec: dict[str, Any]) -> None:
    """OpenAPI links from each created resource to what can be done with it (`LINKS`)."""

    def operation(name: str) -> dict[str, Any]:
        method, path = name.split(" ", 1)
        return spec["paths"][path][method]

    for (source, status), links in LINKS.items():
        response = operation(source)["responses"][status]
        response["links"] = {
            name: {"operationId": operation(target)["operationId"], "parameters": parameters}
            for name, (target, parameters) in links.items()
        }


def job_union(schemas: dict[str, Any]) -> dict[str, Any]:
    """One of the kinds' jobs, told apart by `kind`; the kinds' schemas go into `schemas`."""
    variants = tuple(_job_model(kind) for kind in JOB_KINDS.values())
    union = Annotated[Union[variants], Field(discriminator="kind")]  # noqa: UP007
    generated = TypeAdapter(union).json_schema(ref_template=REF_TEMPLATE)
    schemas.update(generated.pop("$defs", {}))
    return generated


def sweep_union(schemas: dict[str, Any]) -> dict[str, Any]:
    """One of the kinds' sweeps (needs the kinds' jobs in `schemas`: `job_union`)."""
    variants = []
    for kind in JOB_KINDS.values():
        name = f"{_camel(kind.name)}Sweep"
        schemas[name] = _sweep_schema(kind, schemas)
        variants.append({"$ref": REF_TEMPLATE.format(model=name)})
    return {"oneOf": variants}


def _sweep_schema(kind: JobKind, schemas: dict[str, Any]) -> dict[str, Any]:
    params = schemas[kind.params_model.__name__]["properties"]
    grid = {
        name: {"type": "array", "minItems": 1, "items": _value_schema(schema)}
        for name, schema in params.items()
    }
    return {
        "type": "object",
        "title": f"{_camel(kind.name)}Sweep",
        "description": f"A sweep of {kind.name} jobs: every combination of the grid's values.",
        "properties": {
            "base": {"$ref": REF_TEMPLATE.format(model=f"{_camel(kind.name)}Job")},
            "grid": {
                "type": "object",
                "description": "Parameter name -> the values to try; every combination is "
                "one cell.",
                "properties": grid,
                "additionalProperties": False,
                "minProperties": 1,
            },
            "replicates": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_REPLICATES,
                "default": 1,
                "description": "Runs per cell; replicate r uses seed base + r.",
            },
        },
        "required": ["base", "grid"],
    }


def _value_schema(parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema as one value of a grid's list (its default and title dropped)."""
    return {key: value for key, value in parameter.items() if key not in {"default", "title"}}


def _job_model(kind: JobKind) -> type[BaseModel]:
    return create_model(
        f"{_camel(kind.name)}Job",
        __doc__=f"A {kind.name} job. {kind.description}",
        kind=(Literal[kind.name], ...),
        params=(
            kind.params_model,
            Field(
                default_factory=dict,
                description="The kind's parameters; omitted ones take defaults.",
            ),
        ),
    )


def _described(schema: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    return {
        **schema,
        "title": model.__name__,
        "description": (model.__doc__ or "").strip(),
        "examples": model.model_config["json_schema_extra"]["examples"],
    }


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))
