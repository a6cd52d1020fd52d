"""vistas.unicode: lone surrogates are found wherever they hide in a JSON value, and the byte scan
that lets large bodies skip the walk never misses one, however the JSON spells it."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from vistas.unicode import find_lone_surrogate, json_may_hold_surrogate, lone_surrogate

# Strings that often hold surrogates, lone or in pairs (the category Cs is excluded by default).
texts = st.text(st.characters(categories=["Cs", "Lu", "So"]) | st.sampled_from("a\\\"é😀\udc00\ud800"), max_size=6)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, derandomize=True)
@given(doc=values, ascii_only=st.booleans())
def test_the_byte_scan_never_misses_a_lone_surrogate(doc, ascii_only):
    """As escapes (ensure_ascii) or as the raw UTF-8 bytes json.loads lets through ("surrogatepass")."""
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    parsed = json.loads(raw)  # what the server sees
    if find_lone_surrogate(parsed) is not None:
        assert json_may_hold_surrogate(raw)


def test_places_are_named_as_the_api_names_fields():
    doc = {"items": [{"id": "a", "metadata": {"tags": ["ok", "x\udc00"]}}]}
    assert find_lone_surrogate(doc).startswith("items[0].metadata.tags[1]: character 1 is a lone surrogate (U+DC00)")
    assert find_lone_surrogate({"filter": {"n": {"$in": ["\ud800"]}}}).startswith("filter.n['$in'][0]: character 0")
    assert find_lone_surrogate({"a": {"b\udfff": 1}}).startswith("a, key 'b\\udfff': character 1")
    assert find_lone_surrogate("\ud800", "text").startswith("text: character 0")


def test_pairs_and_ordinary_text_are_unicode():
    for ok in ("", "plain", "\U0001f600", "é" * 3, "\ud83d\ude00".encode("utf-16", "surrogatepass").decode("utf-16")):
        assert lone_surrogate(ok) is None
    assert find_lone_surrogate({"a": ["\U0001f600", 1, None, 2.5, True], "b": {}}) is None
    assert not json_may_hold_surrogate(json.dumps({"texts": ["plain", "é"], "v": [1.0] * 100}).encode())
    assert lone_surrogate("ab\udc00") == 2 and lone_surrogate("\ud800\ud800") == 0
