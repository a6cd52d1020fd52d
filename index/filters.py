"""Metadata filters: a small dict language compiled to an SQLite WHERE clause.

    {"kind": "digit"}                      equality (str, int, float, bool)
    {"kind": {"$eq": "digit"}}             the same, spelled out
    {"label": {"$in": [3, 5, "five"]}}     membership
    {"year": {"$gte": 2000, "$lt": 2010}}  numeric range ($gt, $gte, $lt, $lte)

Several keys are ANDed. Keys are top-level metadata keys. Values keep their JSON
type: 1 matches the number 1, never "1" or true; ranges match numbers only. Integers are
SQLite's: signed 64-bit. A filter holds at most MAX_CONDITIONS conditions (key/operator
pairs) and MAX_IN_VALUES values in all its $in lists.

SQLite evaluates the clause with its JSON functions over the stored metadata. Key
paths and values are bound as parameters, never spliced into the SQL text.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

from vistas.unicode import check_unicode

RANGE_OPS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = ("$eq", "$in", *RANGE_OPS)

# json_type() names. Booleans are tested by type alone, because json_extract() turns
# true/false into 1/0 and would otherwise equal the numbers 1 and 0.
_NUMBER_TYPES = "('integer', 'real')"

# Bounds of one filter. Far above what people write by hand, and they keep one filter's SQL
# inside SQLite's limits whatever the build: 32,766 bound parameters (SQLITE_MAX_VARIABLE_NUMBER's
# default; a condition binds at most 5 besides its values) and an expression depth of 1,000
# (SQLITE_MAX_EXPR_DEPTH; each ANDed condition adds one level). Past them SQLite fails the query.
MAX_CONDITIONS = 100
MAX_IN_VALUES = 10_000  # in all $in lists together; Pinecone's limit for one $in list
# SQLite's INTEGER: the type metadata integers are stored and compared in. Larger ones cannot be bound.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def compile_filter(filter: dict | None) -> tuple[str, list]:
    """Filter dict -> (SQL boolean expression over the `metadata` column, parameters).

    An empty or None filter compiles to "1" (match everything).
    Raises ValueError naming the offending key and what is supported.
    """
    if not filter:
        return "1", []
    if not isinstance(filter, dict):
        raise ValueError(f"filter must be a dict like {{'kind': 'digit'}}, got {type(filter).__name__}")
    conditions = sum(len(c) if isinstance(c, dict) else 1 for c in filter.values())
    if conditions > MAX_CONDITIONS:
        raise ValueError(
            f"filter has {conditions} conditions (keys and operators), over the limit of {MAX_CONDITIONS} "
            "(vistas.index.filters.MAX_CONDITIONS); filter on fewer keys, or use $in for many values of one key"
        )
    in_values = sum(len(v) for c in filter.values() if isinstance(c, dict) and isinstance(v := c.get("$in"), (list, tuple)))
    if in_values > MAX_IN_VALUES:
        raise ValueError(
            f"filter has {in_values} $in values, over the limit of {MAX_IN_VALUES} in all "
            "(vistas.index.filters.MAX_IN_VALUES); split the search into several, or filter on a coarser key"
        )
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
    check_unicode(key, f"filter key {key!r}")
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
        return sql, [path, path, _plain(key, value)]
    raise ValueError(f"filter {key!r}: unknown operator {op!r}; supported: {', '.join(OPERATORS)}")


def _equals(key: str, path: str, value) -> tuple[str, list]:
    if isinstance(value, bool):
        return "json_type(metadata, ?) = ?", [path, "true" if value else "false"]
    if _is_number(value):
        sql = f"json_type(metadata, ?) IN {_NUMBER_TYPES} AND json_extract(metadata, ?) = ?"
        return sql, [path, path, _plain(key, value)]
    if isinstance(value, str):
        check_unicode(value, f"filter {key!r}")
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
    numbers = [_plain(key, v) for v in values if _is_number(v)]
    strings = [v for v in values if isinstance(v, str)]
    check_unicode(list(values), f"filter {key!r}: $in")
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
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    return isinstance(value, Integral) or math.isfinite(value)  # isfinite(10**400) would raise


def _plain(key: str, number: Real) -> int | float:
    """numpy scalars -> Python int/float: sqlite3 cannot bind np.int64."""
    if not isinstance(number, Integral):
        return float(number)
    if not INT64_MIN <= number <= INT64_MAX:
        digits = len(str(abs(number)))
        shown = f"the integer {number}" if digits <= 40 else f"an integer of {digits} digits"
        raise ValueError(
            f"filter {key!r}: {shown} is outside the signed 64-bit range [{INT64_MIN}, {INT64_MAX}] "
            "that metadata integers are compared in; send a float (e.g. 1.8e19) to compare beyond it"
        )
    return int(number)
