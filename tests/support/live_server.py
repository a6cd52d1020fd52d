"""The real-server runner the tests use (it lives in serving so benchmarks share it)."""

from vistas.serving.server import LiveServer, running_server

__all__ = ["LiveServer", "running_server"]
