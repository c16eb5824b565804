"""The API document teaches and is exact: every request has an example, every error status an
example body, and job and sweep bodies are each kind's schema (what the code accepts)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from service.jobs.kinds import JOB_KINDS
from service.main import app

SPEC = app.openapi()
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
]


def component(name: str) -> dict[str, Any]:
    return SPEC["components"]["schemas"][name]


def validator(name: str) -> jsonschema.Draft202012Validator:
    """Validates against a component of the document, its references resolved in it."""
    return jsonschema.Draft202012Validator({**SPEC, "$ref": f"#/components/schemas/{name}"})


def has_example(schema: dict[str, Any]) -> bool:
    if "example" in schema or "examples" in schema:
        return True
    reference = schema.get("$ref")
    return bool(reference) and has_example(component(reference.rsplit("/", 1)[-1]))


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[name for name, _ in OPERATIONS])
def test_every_request_body_and_every_error_has_an_example(name, operation):
    body = operation.get("requestBody")
    if body:
        media_type, content = next(iter(body["content"].items()))
        if media_type == "application/json":
            assert has_example(content["schema"]) or "example" in content, name
        else:  # file uploads: a curl command in the description
            assert "curl " in operation["description"], name
    for status, response in operation["responses"].items():
        if status[0] in "45":
            assert "example" in response.get("content", {}).get("application/json", {}), (
                name,
                status,
            )


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_a_job_body_is_its_kinds_schema(kind):
    jobs = validator("JobSubmission")
    assert jobs.is_valid({"kind": kind})
    defaults = JOB_KINDS[kind].params_model().model_dump()
    assert jobs.is_valid({"kind": kind, "params": defaults}), list(
        jobs.iter_errors({"kind": kind, "params": defaults})
    )
    assert not jobs.is_valid({"kind": kind, "params": {"no_such_parameter": 1}})
    first, value = next(iter(defaults.items()))
    wrong_type = "text" if not isinstance(value, str) else 1
    assert not jobs.is_valid({"kind": kind, "params": {first: wrong_type}})
    assert not jobs.is_valid({"kind": "no-such-kind"})


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_a_sweep_grid_names_its_kinds_parameters(kind):
    sweeps = validator("SweepSubmission")
    name, value = next(iter(JOB_KINDS[kind].params_model().model_dump().items()))
    sweep = {"base": {"kind": kind}, "grid": {name: [value]}}
    assert sweeps.is_valid(sweep), list(sweeps.iter_errors(sweep))
    assert not sweeps.is_valid({**sweep, "grid": {"no_such_parameter": [1]}})
    assert not sweeps.is_valid({**sweep, "grid": {name: []}})
    assert not sweeps.is_valid({**sweep, "grid": {}})
    assert not sweeps.is_valid({**sweep, "replicates": 0})


def test_links_lead_from_what_was_created_to_real_operations():
    ids = {operation["operationId"] for _, operation in OPERATIONS}
    created = SPEC["paths"]["/jobs"]["post"]["responses"]["202"]["links"]
    assert created["GetJob"]["parameters"] == {"job_id": "$response.body#/id"}
    links = [
        link
        for _, operation in OPERATIONS
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 9
    assert all(link["operationId"] in ids for link in links)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/jobs", "GET, POST"),  # Starlette's own Allow named POST alone
        ("PUT", f"/jobs/{'0' * 32}", "DELETE, GET"),
        ("OPTIONS", "/v1/models/cnn:predict", "POST"),  # its own path, not /v1/models/{name}
        ("POST", "/jobs/x/plots/history.png", "GET"),
    ],
)
def test_a_405_lists_every_method_the_document_lists_for_the_path(client, method, path, allowed):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allowed
    assert f"allowed: {allowed}." in response.json()["detail"]
