"""Structured logs: one JSON object per line, every line of a request tagged with its id.

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "vistas.access",
     "message": "POST /v1/embed 200", "request_id": "4f1c...", "route": "/v1/embed",
     "status": 200, "latency_ms": 12.3, "model": "tiny-a", ...}

`extra={"fields": {...}}` on a log call adds fields; a log call made while a request is
being handled gets its `request_id` automatically (from vistas.serving.context).

Lines are written by a thread of their own (`QueuedLineHandler`), not by the thread that logs.
A server logs from its event loop; with a plain StreamHandler, a stderr that stops being
read (a stalled log collector, a full pipe: 64 KiB on Linux) blocks that write, and the
event loop with it, so the server stops answering anything, /health included. Here the
event loop only formats the line and puts it in a bounded queue; when the queue is full
the line is dropped and counted (`vistas_log_records_dropped_total`), and serving goes on.
`log_queue_size = 0` restores blocking writes for those who would rather stall than drop.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import TextIO

from vistas.serving.context import current_request


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


class TextFormatter(logging.Formatter):
    """For people at a terminal: `2025-01-01 12:00:00.123  INFO vistas.access: POST /v1/embed 200  latency_ms=12.3 ...`.

    The fields of a JSON line follow the message as key=value, those the message already says
    (method, path, status, route) left out, and a traceback on the lines below.
    """

    IN_MESSAGE = frozenset({"method", "path", "status", "route"})

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        line = f"{ts} {record.levelname:>5} {record.name}: {record.getMessage()}"
        fields = {}
        ctx = current_request()
        if ctx is not None:
            fields["request_id"] = ctx.id
        fields.update(getattr(record, "fields", None) or {})
        extra = [f"{k}={v}" for k, v in fields.items() if v is not None and k not in self.IN_MESSAGE]
        if extra:
            line += "  " + " ".join(extra)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class QueuedLineHandler(logging.Handler):
    """Formats each record in the logging thread (where its request id is), writes it from a
    daemon thread; never blocks the logging thread: a full queue drops the line and counts it.

    Reentrant: uvicorn's SIGTERM handler runs in the main thread between any two bytecodes,
    possibly in the middle of this handler's emit, and logs itself. So the queue is a
    `queue.SimpleQueue` (whose put is reentrant; `queue.Queue` holds a plain lock inside put
    and a nested put deadlocks the event loop) bounded softly through qsize(), and the drop
    counter and the closing flag are guarded by an RLock of their own (not the Handler's
    `lock`: logging.shutdown holds that one while close() waits for the writer thread).

    close() (called by logging.shutdown at exit, or by `vistas serve` when it stops) writes what
    is queued, waiting at most `close_timeout_s` for a stream that may never drain.
    """

    _STOP = object()

    def __init__(self, stream: TextIO | None = None, *, maxsize: int = 10_000, close_timeout_s: float = 5.0):
        super().__init__()
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.stream = stream if stream is not None else sys.stderr
        self.maxsize = maxsize
        self.close_timeout_s = close_timeout_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._dropped = 0
        self._lock = threading.RLock()
        self._closing = False
        self._writer = threading.Thread(target=self._write_lines, name="log-writer", daemon=True)
        self._writer.start()

    @property
    def dropped(self) -> int:
        """Lines lost so far: the queue was full, or the stream raised on write."""
        return self._dropped

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if self._queue.qsize() >= self.maxsize:
            self._count_dropped(1)
        else:
            self._queue.put(line)

    def _count_dropped(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    def _write_lines(self) -> None:
        while True:
            lines = [self._queue.get()]
            while len(lines) < 256:  # whatever else is queued goes out in the same write
                try:
                    lines.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(line is self._STOP for line in lines)
            lines = [line for line in lines if line is not self._STOP]
            if lines:
                try:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
                except Exception:  # closed or broken stream: nothing to report it on
                    self._count_dropped(len(lines))
            if stop:
                return

    def close(self) -> None:
        with self._lock:
            first, self._closing = not self._closing, True
        if first and self._writer.is_alive():  # once: logging.shutdown at exit calls it again
            self._queue.put(self._STOP)
            self._writer.join(self.close_timeout_s)
        super().close()


_handler: logging.Handler | None = None


def dropped_records() -> int:
    """Lines the installed queued handler dropped (0 with blocking writes or none installed)."""
    return getattr(_handler, "dropped", 0)


def configure_logging(level: str = "info", fmt: str = "auto", queue_size: int = 10_000) -> logging.Handler:
    """Root logging for `vistas serve`: uvicorn's own loggers propagate here (no access log of its own).

    fmt: "json", "text", or "auto": text when stderr is a terminal (a person reads it), JSON
    otherwise (a log collector does), as TEI and Qdrant choose.
    queue_size: lines buffered for the writer thread (see the module docstring); 0: the logging
    thread writes to stderr itself and waits for it.
    """
    global _handler
    if fmt == "auto":
        fmt = "text" if _is_terminal(sys.stderr) else "json"
    handler = QueuedLineHandler(maxsize=queue_size) if queue_size > 0 else logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        if old is _handler:
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    _handler = handler
    return handler


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
