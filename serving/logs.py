"""Structured logs: one JSON object per line, every line of a request tagged with its id.

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "vistas.access",
     "message": "POST /v1/embed 200", "request_id": "4f1c...", "route": "/v1/embed",
     "status": 200, "latency_ms": 12.3, "model": "tiny-a", ...}

`extra={"fields": {...}}` on a log call adds fields; a log call made while a request is
being handled gets its `request_id` automatically (from serving.context).
"""

from __future__ import annotations

import json
import logging
import time

from serving.context import current_request


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ctx = current_request()
        if ctx is not None:
            out["request_id"] = ctx.id
        out.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Root logging for `vistas serve`: uvicorn's own loggers propagate here (no access log of its own)."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
