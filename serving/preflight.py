"""What `vistas serve` checks before it starts anything: the bundles, and that its port is free.

A bundle path that is not a bundle used to fail inside uvicorn's lifespan, as a 5.9 KB JSON
traceback and exit 3; a busy port, after the models had loaded, as uvicorn's own log line. Both
are mistakes a user fixes from one sentence, so they are `CannotServe` (a ValueError: the command
line prints its message on one line and exits 2, as for every other refusal).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from vistas.bundle import load_bundle_spec


class CannotServe(ValueError):
    """The server cannot start, for a reason its message states with what to do."""


def check_bundles(bundles: Sequence[str]) -> None:
    """Every bundle has a bundle.json and the files it lists; no two share a model name."""
    names: dict[str, str] = {}
    for bundle in bundles:
        try:
            spec = load_bundle_spec(bundle)
        except FileNotFoundError as e:
            raise CannotServe(str(e)) from None
        except (ValueError, KeyError, TypeError) as e:  # bundle.json is there but is not a bundle spec
            raise CannotServe(f"{bundle}/bundle.json cannot be read ({e}); re-export the bundle with "
                              "`vistas export CHECKPOINT OUT`") from None
        if spec.name in names:
            raise CannotServe(f"two bundles are named {spec.name!r} ({names[spec.name]} and {bundle}); model names "
                              "must be unique: re-export one with `vistas export ... --name OTHER`")
        names[spec.name] = bundle


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port for uvicorn to serve on (it listens once the models are in).

    Bound here, before anything loads, so a busy port is one clear line within a second. The
    protocol is given as TCP so that asyncio sets TCP_NODELAY on its connections (see
    running_server), and SO_REUSEADDR as asyncio's own servers have it, so a restart does not
    wait out the TIME_WAIT of the last run's connections.
    """
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise CannotServe(f"cannot listen on {host}:{port}: {e.strerror}; give --host an address of this "
                          "machine (127.0.0.1, 0.0.0.0, ::)") from None
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CannotServe(f"{host}:{port} is already in use (another server is listening there): stop it, "
                              "or pick another port with --port") from None
        raise CannotServe(f"cannot listen on {host}:{port}: {e.strerror}") from None
    return sock
