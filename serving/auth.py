"""API keys: `Authorization: Bearer <key>` on every path but the public ones.

Keys come from settings (`api_keys`, VISTAS_API_KEYS="k1,k2") and/or a file
(`api_keys_file`: one key per line, `#` comments and blank lines ignored), read once
at start. No key configured means no authentication.

Only SHA-256 digests of the keys are kept; a presented key is hashed and looked up,
so the comparison time says nothing about how much of a key matched. Logs and rate
limits name a caller by a short digest ("key-1a2b3c4d"), never by the key.

Answers follow RFC 6750: 401 with `WWW-Authenticate: Bearer ...` when the key is
missing (`missing_api_key`) or unknown (`invalid_api_key`). Unknown keys are throttled per
client address (vistas.serving.auth_throttle): past `auth_failure_limit` of them within
`auth_failure_window_s`, 429 `too_many_auth_failures` with `Retry-After`.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from vistas.serving.auth_throttle import FailedAuth
from vistas.serving.context import current_request
from vistas.serving.errors import error_response

REALM = 'Bearer realm="vistas"'


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(key: str) -> str:
    return f"key-{_digest(key)[:8]}"


class APIKeys:
    def __init__(self, keys: list[str] | tuple[str, ...] = (), file: str | Path | None = None):
        keys = [k.strip() for k in keys if k.strip()]
        if file is not None:
            keys += read_keys_file(file)
        self._ids = {_digest(k): key_id(k) for k in keys}

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def check(self, key: str) -> str | None:
        """The caller id of a valid key, or None."""
        return self._ids.get(_digest(key))


def read_keys_file(path: str | Path) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise ValueError(f"cannot read the API keys file {path}: {e}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ValueError(f"the API keys file {path} holds no key; put one key per line, or unset api_keys_file")
    return keys


def is_public(path: str, public_paths: tuple[str, ...]) -> bool:
    """Exact paths, or prefixes written with a trailing `*` ("/v2/health/*")."""
    return any(path.startswith(p[:-1]) if p.endswith("*") else path == p for p in public_paths)


class BearerAuth:
    """Pure ASGI middleware; a no-op when no key is configured."""

    def __init__(self, app: ASGIApp, keys: APIKeys, public_paths: list[str], failed: FailedAuth | None = None):
        self.app = app
        self.keys = keys
        self.public = tuple(public_paths)
        self.failed = failed if failed is not None else FailedAuth(limit=10, window_s=60.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or is_public(scope["path"], self.public):
            await self.app(scope, receive, send)
            return
        address = _address(scope)
        if (wait := self.failed.blocked_for(address)) > 0:
            seconds = math.ceil(wait)
            response = error_response(
                429,
                "too_many_auth_failures",
                f"This address sent {self.failed.limit} requests with a wrong API key within "
                f"{self.failed.window_s:g} s (auth_failure_limit, auth_failure_window_s); retry in {seconds} s "
                "with the key you were given.",
                headers={"Retry-After": str(seconds)},
            )
            await response(scope, receive, send)
            return
        scheme, _, token = _authorization(scope).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            response = error_response(
                401,
                "missing_api_key",
                "This server needs an API key: send the header `Authorization: Bearer <key>`.",
                headers={"WWW-Authenticate": REALM},
            )
            await response(scope, receive, send)
            return
        caller = self.keys.check(token.strip())
        if caller is None:
            self.failed.record(address)
            response = error_response(
                401,
                "invalid_api_key",
                "The API key is not valid for this server; check the key you were given.",
                headers={"WWW-Authenticate": f'{REALM}, error="invalid_token"'},
            )
            await response(scope, receive, send)
            return
        if (ctx := current_request()) is not None:
            ctx.caller = caller
        await self.app(scope, receive, send)


def _authorization(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return value.decode("latin-1").strip()
    return ""


def _address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"
