"""A small reader of protobuf text format (Triton's config.pbtxt), independent of the code that writes it.

parse('a: 1 b { c: "x" } d: [ 1, 2 ]') -> {"a": [1], "b": [{"c": ["x"]}], "d": [1, 2]}
Every field maps to a list (fields may repeat); `[ ... ]` spreads into that list.
"""

from __future__ import annotations

import json
import re

_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[{}\[\]:,]|[A-Za-z_][\w.]*|-?\d+(?:\.\d+)?)')


def _tokens(text: str) -> list[str]:
    text = re.sub(r"#[^\n]*", "", text)
    out, pos = [], 0
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"cannot read config text at {text[pos:pos + 20]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def _scalar(tok: str):
    if tok.startswith('"'):
        return json.loads(tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if re.fullmatch(r"-?\d+\.\d+", tok):
        return float(tok)
    return tok  # an enum name: TYPE_FP32, KIND_CPU, true


def _value(toks: list[str], i: int) -> tuple[object, int]:
    if toks[i] == "{":
        msg, i = _message(toks, i + 1)
        return msg, i + 1  # past "}"
    return _scalar(toks[i]), i + 1


def _message(toks: list[str], i: int) -> tuple[dict, int]:
    msg: dict[str, list] = {}
    while i < len(toks) and toks[i] != "}":
        key = toks[i]
        i += 1
        if toks[i] == ":":
            i += 1
        if toks[i] == "[":
            i += 1
            while toks[i] != "]":
                v, i = _value(toks, i)
                msg.setdefault(key, []).append(v)
                if toks[i] == ",":
                    i += 1
            i += 1
        else:
            v, i = _value(toks, i)
            msg.setdefault(key, []).append(v)
    return msg, i


def parse(text: str) -> dict:
    msg, i = _message(_tokens(text), 0)
    return msg
