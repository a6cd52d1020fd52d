"""Real components a test needs. Missing on a developer's machine: the test skips and says how to
install it. Missing in CI (CI=true, set by .ci/run): the test fails, as CI installs everything."""

from __future__ import annotations

import importlib
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(message: str) -> None:
    """Fail in CI, skip elsewhere, with `message` saying what to install."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: CI must install it)")
    pytest.skip(message)


def require(module: str, install: str):
    """Import `module`, or skip / fail (in CI) naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} is not installed: {install}")
