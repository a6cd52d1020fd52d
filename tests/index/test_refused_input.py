"""What a collection refuses before SQLite fails on it: filters past SQLite's limits (integers
beyond 64 bits, huge $in lists, a thousand keys) and text that is not Unicode (lone surrogates)
in filters, ids and metadata. Each is a ValueError naming the limit or the place, and a refused
write leaves nothing behind, also after the collection is closed and opened again."""

import numpy as np
import pytest

from vistas.index import Collection, compile_filter
from vistas.index.filters import INT64_MAX, INT64_MIN, MAX_CONDITIONS, MAX_IN_VALUES

DIM, N, SPACE = 8, 50, "sha256:test-space"


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def col(tmp_path):
    x = unit(np.random.default_rng(0).normal(size=(N, DIM)))
    c = Collection.create(tmp_path / "col", dim=DIM, space_id=SPACE)
    c.upsert([f"i{j}" for j in range(N)], x, [{"n": j, "tag": f"t{j}"} for j in range(N)], space_id=SPACE)
    yield c
    c.close()


def ids(hits) -> set[str]:
    return {h.id for h in hits}


QUERY = unit(np.ones(DIM))


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**64, 10**400], ids=["2^63", "-2^63-1", "2^64", "10^400"])
@pytest.mark.parametrize("shape", ["eq", "range", "in"])
def test_integers_beyond_64_bits_are_refused(col, value, shape):
    flt = {"eq": {"n": value}, "range": {"n": {"$gte": value}}, "in": {"n": {"$in": [1, value]}}}[shape]
    with pytest.raises(ValueError, match="outside the signed 64-bit range"):
        col.search(QUERY, k=5, filter=flt)
    # The bounds themselves are integers SQLite binds and compares.
    assert col.search(QUERY, k=N, filter={"n": {"$gte": INT64_MIN, "$lte": INT64_MAX}}) != []


def test_in_values_up_to_the_limit_work_and_beyond_are_refused(col):
    values = list(range(1000, 1000 + MAX_IN_VALUES - 2)) + [3, 7]  # exactly MAX_IN_VALUES, two of them match
    assert ids(col.search(QUERY, k=10, filter={"n": {"$in": values}})) == {"i3", "i7"}
    with pytest.raises(ValueError, match=f"over the limit of {MAX_IN_VALUES} in all.*MAX_IN_VALUES"):
        col.search(QUERY, k=10, filter={"n": {"$in": values + [8]}})
    half = {"$in": list(range(MAX_IN_VALUES // 2 + 1))}  # the limit counts every $in list of the filter
    with pytest.raises(ValueError, match="MAX_IN_VALUES"):
        col.search(QUERY, k=10, filter={"n": half, "m": half})
    with pytest.raises(ValueError, match="MAX_IN_VALUES"):
        col.search(QUERY, k=10, filter={"n": {"$in": list(range(400_000))}})


def test_conditions_up_to_the_limit_work_and_beyond_are_refused(col):
    # MAX_CONDITIONS conditions on items of the form {"n": j, "tag": "tj"}: only i7 passes them all.
    flt = {"n": {"$gte": 7, "$lte": 7}, "tag": "t7"}
    filler = {f"k{i}": {"$gte": 0} for i in range(MAX_CONDITIONS - 3)}  # keys the items lack: never true
    assert ids(col.search(QUERY, k=5, filter=flt)) == {"i7"}
    assert col.search(QUERY, k=5, filter=flt | filler) == []  # SQLite takes the full-size filter
    with pytest.raises(ValueError, match=f"filter has {MAX_CONDITIONS + 1} conditions.*MAX_CONDITIONS"):
        col.search(QUERY, k=5, filter=flt | filler | {"one_more": 1})
    with pytest.raises(ValueError, match="filter has 1000 conditions"):
        col.search(QUERY, k=5, filter={f"k{i}": i for i in range(1000)})


@pytest.mark.parametrize(
    "flt, where",
    [({"tag": "t\udc00"}, "filter 'tag': character 1"),
     ({"tag": {"$in": ["t1", "\ud800"]}}, r"filter 'tag': \$in\[1\]: character 0"),
     ({"t\udfff": 1}, "filter key 't\\\\udfff': character 1")],
    ids=["value", "$in value", "key"],
)  # fmt: skip
def test_lone_surrogates_in_filters_are_refused(col, flt, where):
    with pytest.raises(ValueError, match=f"{where} is a lone surrogate"):
        compile_filter(flt)
    with pytest.raises(ValueError, match="lone surrogate"):
        col.search(QUERY, k=5, filter=flt)


@pytest.mark.parametrize(
    "item_id, metadata, where",
    [("bad", {"caption": "ok \udc00"}, r"item 'bad': metadata.caption: character 3"),
     ("bad", {"tags": ["fine", {"deep": "\ud83d"}]}, r"item 'bad': metadata.tags\[1\].deep: character 0"),
     ("bad", {"k\udc00": 1}, r"item 'bad': metadata, key 'k\\udc00': character 1"),
     ("b\udc00", {}, r"item id 'b\\udc00': character 1")],
    ids=["value", "nested value", "key", "id"],
)  # fmt: skip
def test_lone_surrogates_are_never_stored(col, tmp_path, item_id, metadata, where):
    before = col.count
    vector = unit(np.ones((1, DIM)))
    with pytest.raises(ValueError, match=f"{where} is a lone surrogate"):
        col.upsert(["good", item_id], np.repeat(vector, 2, axis=0), [{"ok": True}, metadata], space_id=SPACE)
    assert col.count == before and col.get("good") is None  # the whole write is refused
    col.close()
    reopened = Collection.open(tmp_path / "col")
    try:
        assert reopened.count == before and reopened.get("good") is None
        hits = reopened.search(QUERY, k=N)
        assert len(hits) == N and all(h.id.startswith("i") for h in hits)
    finally:
        reopened.close()


def test_a_valid_surrogate_pair_is_text(col):
    """A character outside the BMP ("\\ud83d\\ude00" in JSON) is one valid code point, stored and found."""
    col.upsert(["emoji"], unit(np.ones((1, DIM))), [{"face": "smile \U0001f600"}], space_id=SPACE)
    assert col.get("emoji")["metadata"] == {"face": "smile \U0001f600"}
    assert ids(col.search(QUERY, k=5, filter={"face": "smile \U0001f600"})) == {"emoji"}
