"""Metadata filters: a small dict language compiled to an SQLite WHERE clause.

    {"kind": "digit"}                      equality (str, int, float, bool)
    {"kind": {"$eq": "digit"}}             the same, spelled out
    {"label": {"$in": [3, 5, "five"]}}     membership
    {"year": {"$gte": 2000, "$lt": 2010}}  numeric range ($gt, $gte, $lt, $lte)

Several keys are ANDed. Keys are top-level metadata keys. Values keep their JSON
type: 1 matches the number 1, never "1" or true; ranges match numbers only.

SQLite evaluates the clause with its JSON functions over the stored metadata. Key
paths and values are bound as parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = ("$eq", "$in", *RANGE_OPS)

# json_type() names. Booleans are tested by type alone, because json_extract() turns
# true/false into 1/0 and would otherwise equal the numbers 1 and 0.
_NUMBER_TYPES = "('integer', 'real')"


def compile_filter(filter: dict | None) -> tuple[str, list]:
    """Filter dict -> (SQL boolean expression over the `metadata` column, parameters).

    An empty or None filter compiles to "1" (match everything).
    Raises ValueError naming the offending key and what is supported.
    """
    if not filter:
        return "1", []
    if not isinstance(filter, dict):
        raise ValueError(f"filter must be a dict like {{'kind': 'digit'}}, got {type(filter).__name__}")
    clauses, params = [], []
    for key, cond in filter.items():
        path = _json_path(key)
        if isinstance(cond, dict):
            if not cond:
                raise ValueError(f"filter on {key!r} is an empty operator dict; use one of {', '.join(OPERATORS)}")
            for op, value in cond.items():
                clause, p = _operator(key, path, op, value)
                clauses.append(clause)
                params += p
        else:
            clause, p = _equals(key, path, cond)
            clauses.append(clause)
            params += p
    return " AND ".join(f"({c})" for c in clauses), params


def _json_path(key) -> str:
    if not isinstance(key, str) or not key or '"' in key or "\\" in key:
        raise ValueError(f"filter key {key!r} must be a non-empty string without quotes or backslashes")
    return f'$."{key}"'


def _operator(key: str, path: str, op: str, value) -> tuple[str, list]:
    if op == "$eq":
        return _equals(key, path, value)
    if op == "$in":
        return _member(key, path, value)
    if op in RANGE_OPS:
        if not _is_number(value):
            raise ValueError(f"filter {key!r}: {op} needs a finite number, got {value!r}")
        sql = f"json_type(metadata, ?) IN {_NUMBER_TYPES} AND json_extract(metadata, ?) {RANGE_OPS[op]} ?"
        return sql, [path, path, _plain(value)]
    raise ValueError(f"filter {key!r}: unknown operator {op!r}; supported: {', '.join(OPERATORS)}")


def _equals(key: str, path: str, value) -> tuple[str, list]:
    if isinstance(value, bool):
        return "json_type(metadata, ?) = ?", [path, "true" if value else "false"]
    if _is_number(value):
        sql = f"json_type(metadata, ?) IN {_NUMBER_TYPES} AND json_extract(metadata, ?) = ?"
        return sql, [path, path, _plain(value)]
    if isinstance(value, str):
        return "json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) = ?", [path, path, value]
    raise ValueError(
        f"filter {key!r}: cannot compare with {value!r}; equality takes a str, int, float or bool "
        f"(operators: {', '.join(OPERATORS)})"
    )


def _member(key: str, path: str, values) -> tuple[str, list]:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"filter {key!r}: $in needs a list, got {values!r}")
    # Grouped by JSON type so one IN (...) per type keeps the SQL expression shallow
    # however long the list is (SQLite caps expression depth at 1000).
    bools = {v for v in values if isinstance(v, bool)}
    numbers = [_plain(v) for v in values if _is_number(v)]
    strings = [v for v in values if isinstance(v, str)]
    if len(bools) + len(numbers) + len(strings) != len(values):
        bad = next(v for v in values if not isinstance(v, (bool, str)) and not _is_number(v))
        raise ValueError(f"filter {key!r}: $in values must be str, int, float or bool, got {bad!r}")
    ors, params = [], []
    if strings:
        marks = ", ".join("?" * len(strings))
        ors.append(f"json_type(metadata, ?) = 'text' AND json_extract(metadata, ?) IN ({marks})")
        params += [path, path, *strings]
    if numbers:
        marks = ", ".join("?" * len(numbers))
        ors.append(f"json_type(metadata, ?) IN {_NUMBER_TYPES} AND json_extract(metadata, ?) IN ({marks})")
        params += [path, path, *numbers]
    if bools:
        marks = ", ".join("?" * len(bools))
        ors.append(f"json_type(metadata, ?) IN ({marks})")
        params += [path, *("true" if b else "false" for b in bools)]
    if not ors:
        return "0", []  # $in [] matches nothing
    return " OR ".join(f"({o})" for o in ors), params


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _plain(number: Real) -> int | float:
    """numpy scalars -> Python int/float: sqlite3 cannot bind np.int64."""
    return int(number) if isinstance(number, Integral) else float(number)
