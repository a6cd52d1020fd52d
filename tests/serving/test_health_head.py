"""HEAD /health and HEAD /ready answer like GET, without a body: load balancers and uptime
checkers (HAProxy's `option httpchk HEAD`, many monitors) probe with HEAD, and a 405 reads as down."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_head_answers_like_get(client, path):
    get, head = client.get(path), client.head(path)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert "x-request-id" in head.headers
