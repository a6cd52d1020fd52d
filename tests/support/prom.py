"""Reading a server's Prometheus /metrics in tests, with prometheus-client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(base_url: str, **headers) -> dict[str, list[tuple[dict, float]]]:
    """GET /metrics -> {sample name: [(labels, value)]}."""
    r = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, list[tuple[dict, float]]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(samples: dict, name: str, **labels) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there are none)."""
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == str(x) for k, x in labels.items()))
