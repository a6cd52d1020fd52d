"""Text must be Unicode scalar values: no lone surrogates (U+D800..U+DFFF).

JSON can spell a lone surrogate as an escape ("\\udc00"; RFC 8259 section 8.2 leaves its meaning
open, I-JSON, RFC 7493, forbids it), and Python's json module also lets UTF-8-encoded surrogate
bytes through. Either way the result is a `str` that cannot be encoded as UTF-8, so it fails
far from where it came in: in the tokenizer, in SQLite's bindings, in the JSON encoder of every
later response that carries it. Servers built on serde_json (Qdrant, TEI) refuse it while
parsing; we refuse it where text enters, naming where, with the functions here.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
# A string parsed from JSON holds a lone surrogate only if the JSON has a \ud800-\udfff escape or
# the UTF-8 bytes of a surrogate (json.loads decodes bytes with "surrogatepass").
_SURROGATE_IN_JSON = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def lone_surrogate(text: str) -> int | None:
    """Index of the first lone surrogate in `text`, or None when it is valid Unicode text."""
    m = _SURROGATE.search(text)
    return m.start() if m else None


def json_may_hold_surrogate(raw: bytes) -> bool:
    """False when no string parsed from the JSON text `raw` can hold a lone surrogate: one fast scan
    of the bytes spares the walk over every value of a large body (find_lone_surrogate)."""
    if b"\\" not in raw and b"\xed" not in raw:  # one-byte searches run at memchr speed (~1 ms for 10 MB)
        return False
    return _SURROGATE_IN_JSON.search(raw) is not None


def surrogate_message(where: str, text: str, index: int) -> str:
    """What was wrong and what to do, for the lone surrogate at text[index]."""
    return (
        f"{where}: character {index} is a lone surrogate (U+{ord(text[index]):04X}), which is not Unicode "
        "text; send valid UTF-8 (in JSON, a \\ud800-\\udbff escape must be followed by a \\udc00-\\udfff one)."
    )


def find_lone_surrogate(value, where: str = "") -> str | None:
    """The first string in a JSON-like value (dict keys included) that holds a lone surrogate, as
    a message naming its place (`where` + path, e.g. 'items[0].metadata.tags[2]'), else None.

    Iterative, so nesting as deep as the JSON parser allowed cannot overflow the stack.
    """
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if (i := lone_surrogate(item)) is not None:
                return surrogate_message(path or "the value", item, i)
        elif isinstance(item, dict):
            for key in item:
                if isinstance(key, str) and (i := lone_surrogate(key)) is not None:
                    return surrogate_message(f"{path or 'the object'}, key {key!r}", key, i)
            stack.extend((v, _child(path, k)) for k, v in reversed(item.items()))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{path}[{n}]") for n, v in reversed(list(enumerate(item))))
    return None


def _child(path: str, key) -> str:
    """Paths as the API's error messages write them: items[0].metadata.color, filter.year['$gte']."""
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def check_unicode(value, where: str) -> None:
    """ValueError naming the place when any string in `value` (a str or JSON-like value) is not Unicode text."""
    message = find_lone_surrogate(value, where)
    if message is not None:
        raise ValueError(message)
