"""Python configs: `configs/<recipe>.py` exposes `get_config(arg: str) -> Config`.

The CLI form is `path/to/recipe.py[:key=value,key=value]`; the part after the colon
is handed to `get_config` untouched, and `parse_arg` turns it into a dict with
`ast.literal_eval` (never `eval`), as big_vision's `config_flags` do.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from typing import Any


class Config(dict):
    """A dict with attribute access, nested. JSON-serialisable when its leaves are."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no field {name!r}; fields: {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @classmethod
    def wrap(cls, d: dict) -> "Config":
        return cls({k: cls.wrap(v) if isinstance(v, dict) else v for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self, indent=2, sort_keys=True)


def parse_arg(arg: str | None, **defaults: Any) -> Config:
    """'quick=True,steps=200,name=foo' -> Config(quick=True, steps=200, name='foo').

    Values are Python literals; a bare word that is not a literal stays a string.
    Keys not in `defaults` are rejected so a typo cannot silently do nothing.
    """
    out = Config(defaults)
    if not arg:
        return out
    for part in arg.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            key, value = part.strip(), "True"  # 'quick' alone means quick=True
        else:
            key, value = (s.strip() for s in part.split("=", 1))
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def recipes_dir() -> Path:
    """The installed recipes (`vistas.configs`, the repository's configs/), found without importing them."""
    return Path(importlib.util.find_spec("vistas.configs").origin).parent


def resolve_recipe(path: str) -> Path:
    """A recipe file, or a bare recipe name ('siglip_shapes_digits') looked up among the installed recipes."""
    file = Path(path)
    if file.is_file():
        return file
    if "/" not in path and "\\" not in path:
        named = recipes_dir() / (path if path.endswith(".py") else f"{path}.py")
        if named.is_file():
            return named
    known = sorted(p.stem for p in recipes_dir().glob("*.py") if p.stem != "__init__")
    raise FileNotFoundError(
        f"config {path!r} not found: give a file (configs/<recipe>.py[:arg]) or one of the recipes {known}"
    )


def load_config(spec: str) -> Config:
    """'configs/siglip_shapes.py:quick=True' or 'siglip_shapes:quick=True' -> the recipe's Config."""
    path, _, arg = spec.partition(":")
    file = resolve_recipe(path)
    module_spec = importlib.util.spec_from_file_location(f"vistas_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"{file} defines no get_config(arg) function")
    return Config.wrap(module.get_config(arg or None))
