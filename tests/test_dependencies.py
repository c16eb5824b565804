"""Dependencies stay past known advisories: the floors in pyproject.toml, and what is installed.

`make audit` asks PyPI's advisory database (pip-audit) where it is reachable; this machine and
CI reach only the package index, so the advisories that concern this service are listed here.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version

import pytest
from packaging.version import Version

from tests.stack import REPO_ROOT

# package: (first fixed version, advisories; why they matter here)
ADVISORIES = {
    "pillow": ("11.3", "CVE-2023-4863 libwebp (WebP uploads are accepted), CVE-2025-48379"),
    "python-multipart": ("0.0.18", "CVE-2024-53981: multipart parsing DoS (uploads)"),
    "starlette": ("0.49.1", "CVE-2025-54121, CVE-2025-62727: multipart and Range DoS"),
    "keras": ("3.12", "CVE-2025-1550, CVE-2025-8747, CVE-2025-9906: safe_mode bypasses"),
    "h11": ("0.16", "CVE-2025-43859: request smuggling"),
}


def floors() -> dict[str, Version]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    found = {}
    for requirement in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[^]]*\])?>=([0-9.]+).*", requirement)
        if match:
            found[match[1].lower()] = Version(match[2])
    return found


@pytest.mark.parametrize("package", sorted(ADVISORIES))
def test_the_floor_and_the_installed_version_are_past_the_advisories(package):
    fixed, advisories = ADVISORIES[package]
    assert floors().get(package, Version("0")) >= Version(fixed), advisories
    assert Version(version(package)) >= Version(fixed), advisories
