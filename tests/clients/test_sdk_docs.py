"""What the SDK's docstrings promise matches the server: classify's default templates.

Without templates the server phrases each label with its two defaults; how much templates
matter is the first thing a user of the bundled model trips on (a handwritten four scores 0.42
with the defaults, 0.998 with templates phrased as its training captions were: README, Python SDK).
"""

from __future__ import annotations

import inspect

import pytest

from vistas.inference.model import DEFAULT_TEMPLATES
from vistas_client import AsyncClient, Client


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_classify_docstring_names_the_server_default_templates(cls):
    doc = inspect.getdoc(cls.classify)
    for template in DEFAULT_TEMPLATES:
        assert f'"{template}"' in doc, doc
