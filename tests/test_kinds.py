"""Each job kind's API parameters agree with the training function that runs them."""

import importlib
import inspect

import pytest

from service.jobs.kinds import JOB_KINDS

# What the worker passes besides the params (its progress reporter and folders).
RESOURCE_ARGUMENTS = {"progress", "model_dir", "mnist_path", "svhn_dir", "tensorboard_dir"}


@pytest.mark.parametrize("kind", sorted(JOB_KINDS))
def test_params_and_defaults_match_the_training_function(kind):
    job_kind = JOB_KINDS[kind]
    module_name, function_name = job_kind.entry_point.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    signature = inspect.signature(function)

    defaults = job_kind.params_model().model_dump()
    for param, argument in job_kind.model_references:  # a reference becomes a file's path
        defaults[argument] = defaults.pop(param)
    arguments = set(signature.parameters) - RESOURCE_ARGUMENTS
    assert set(defaults) == arguments
    for name, value in defaults.items():
        default = signature.parameters[name].default
        expected = list(default) if isinstance(default, tuple) else default
        assert value == expected, f"{kind}.{name}: API default {value!r}, function {expected!r}"

    assert set(job_kind.resources) <= set(signature.parameters)
    assert job_kind.produces_model == ("model_dir" in signature.parameters)
