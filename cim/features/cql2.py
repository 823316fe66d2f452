"""CQL2 filters (OGC API – Features Part 3) to a parametrised SQL WHERE clause over a collection's queryables.

Text and JSON are both parsed by the ``cql2`` package (the Rust reference parser) into CQL2 JSON; this module
walks that tree. Every literal becomes a ``?`` parameter; property names are looked up in the collection's
queryables (a whitelist) and replaced by their SQL, so no user text ever reaches the SQL string.

Supported: ``and or not``, ``= <> < <= > >=``, ``LIKE`` (``%``, ``_``, ``\\`` escape), ``BETWEEN``, ``IN``,
``IS NULL``, ``CASEI``/``ACCENTI``, ``+ - * /`` on numbers, property–property comparisons, ``DATE``/``TIMESTAMP``
literals, the spatial functions ``S_INTERSECTS S_EQUALS S_DISJOINT S_TOUCHES S_WITHIN S_OVERLAPS S_CROSSES
S_CONTAINS`` and ``S_DWITHIN(geometry, <geometry>, <distance>[, meters])`` (an extension: distance in metres,
measured in the storage projection). Geometry literals (WKT, GeoJSON or ``BBOX``) are read in ``filter-crs``
(default CRS84, lon/lat) and transformed to the storage CRS. Temporal (``T_*``) and array (``A_*``) functions
are refused with a 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import shapely
from shapely.geometry import shape

from cim.errors import InvalidInputError, UnsupportedError
from cim.features.collections import Collection, Queryable
from cim.features.crs import OutputCRS, geometry_to_storage

#: Conformance classes of CQL2 1.0 this module implements.
CONFORMANCE = (
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/case-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/accent-insensitive-comparison",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/property-property",
)
LANGS = ("cql2-text", "cql2-json")
GEOMETRY = "geometry"
_COMPARISON = {"=": "=", "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_ARITHMETIC = {"+": "+", "-": "-", "*": "*", "/": "/"}
_SPATIAL = {
    "s_intersects": "ST_Intersects", "s_equals": "ST_Equals", "s_disjoint": "ST_Disjoint",
    "s_touches": "ST_Touches", "s_within": "ST_Within", "s_overlaps": "ST_Overlaps",
    "s_crosses": "ST_Crosses", "s_contains": "ST_Contains",
}
_SWAPPED = {"s_within": "s_contains", "s_contains": "s_within"}  # literal first: swap the roles
_UNITS = {"meters": 1.0, "metres": 1.0, "meter": 1.0, "metre": 1.0, "m": 1.0, "kilometers": 1000.0,
          "kilometres": 1000.0, "km": 1000.0}
MAX_FILTER_CHARS = 20_000


@dataclass
class SqlFilter:
    """A translated filter: SQL with ``?`` markers, its parameters and the properties it reads."""

    sql: str
    params: list[Any] = field(default_factory=list)
    properties: set[str] = field(default_factory=set)
    spatial: bool = False


def parse_filter(text: str, lang: str | None = None) -> Any:
    """A CQL2 text or JSON filter as CQL2 JSON (Python values).

    Raises:
        InvalidInputError: unknown ``lang`` or a malformed filter (the message gives the parser's position).
    """
    try:
        import cql2
    except ImportError:
        raise UnsupportedError("CQL2 filters need the cql2 package (pip install 'cql2>=0.3')") from None
    lang = (lang or "cql2-text").strip().lower()
    if lang not in LANGS:
        raise InvalidInputError(f"filter-lang {lang!r} is not supported (use cql2-text or cql2-json)",
                                field="filter-lang", value=lang)
    if not text or not text.strip():
        raise InvalidInputError("filter is empty", field="filter")
    if len(text) > MAX_FILTER_CHARS:
        raise InvalidInputError(f"filter is longer than {MAX_FILTER_CHARS} characters", field="filter")
    try:
        expr = cql2.parse_text(text) if lang == "cql2-text" else cql2.parse_json(text)
        return expr.to_json()
    except Exception as exc:  # noqa: BLE001 - cql2 raises ParseError/ValueError with the position in the text
        detail = " ".join(str(exc).split())
        raise InvalidInputError(f"malformed {lang} filter: {detail}", field="filter") from None


def to_sql(tree: Any, collection: Collection, *, geometry_sql: str, storage_crs: str, filter_crs: OutputCRS
           ) -> SqlFilter:
    """The SQL predicate of a parsed filter over ``collection``'s queryables.

    Raises:
        InvalidInputError: an unknown property or operator, a wrong number or type of arguments.
    """
    out = SqlFilter("")
    walker = _Walker(collection, geometry_sql, storage_crs, filter_crs, out)
    sql, kind = walker.expr(tree)
    if kind != "boolean":
        raise InvalidInputError(f"filter must be a condition (a predicate), not a {kind} value", field="filter")
    out.sql = sql
    return out


class _Walker:
    def __init__(self, collection: Collection, geometry_sql: str, storage_crs: str, filter_crs: OutputCRS,
                 out: SqlFilter) -> None:
        self.collection, self.geometry_sql = collection, geometry_sql
        self.storage_crs, self.filter_crs, self.out = storage_crs, filter_crs, out

    # -- dispatch ---------------------------------------------------------------------------------------------
    def expr(self, node: Any) -> tuple[str, str]:
        """SQL and value kind (boolean, string, number, date, timestamp, geometry, array) of a node."""
        if isinstance(node, bool):
            return ("TRUE" if node else "FALSE"), "boolean"
        if isinstance(node, int | float):
            return self._param(float(node)), "number"
        if isinstance(node, str):
            return self._param(node), "string"
        if isinstance(node, list):
            raise InvalidInputError("a list is only allowed as the second argument of IN", field="filter")
        if not isinstance(node, dict):
            raise InvalidInputError(f"unexpected filter element {node!r}", field="filter")
        if "property" in node:
            return self._property(str(node["property"]))
        if "date" in node:
            return self._param(_date(node["date"])), "date"
        if "timestamp" in node:
            return self._param(_timestamp(node["timestamp"])), "timestamp"
        if "interval" in node:
            raise InvalidInputError("INTERVAL literals need temporal functions (T_*), which are not supported",
                                    field="filter")
        if "bbox" in node or "type" in node:
            raise InvalidInputError("a geometry literal is only allowed inside a spatial function (S_INTERSECTS ...)",
                                    field="filter")
        if "op" not in node:
            raise InvalidInputError(f"unexpected filter element {json.dumps(node)[:200]}", field="filter")
        op = str(node["op"]).lower()
        args = node.get("args")
        if not isinstance(args, list):
            raise InvalidInputError(f"operator {op!r} needs a list of args", field="filter")
        return self._op(op, args)

    def _op(self, op: str, args: list[Any]) -> tuple[str, str]:
        handlers = {"and": self._logical, "or": self._logical, "not": self._not, "like": self._like,
                    "between": self._between, "in": self._in, "isnull": self._isnull, "casei": self._function,
                    "accenti": self._function, "s_dwithin": self._spatial,
                    **dict.fromkeys(_COMPARISON, self._compare), **dict.fromkeys(_ARITHMETIC, self._arithmetic),
                    **dict.fromkeys(_SPATIAL, self._spatial)}
        if op in handlers:
            return handlers[op](op, args)
        if op.startswith(("t_", "a_")):
            raise InvalidInputError(f"{op.upper()}: temporal and array functions are not supported", field="filter")
        raise InvalidInputError(f"unknown operator or function {op!r} (supported: and, or, not, comparisons, like, "
                                "between, in, isNull, casei, accenti, + - * /, S_* spatial functions, S_DWITHIN)",
                                field="filter")

    def _logical(self, op: str, args: list[Any]) -> tuple[str, str]:
        if len(args) < 2:
            raise InvalidInputError(f"{op.upper()} needs at least 2 conditions", field="filter")
        return "(" + f" {op.upper()} ".join(self._condition(a) for a in args) + ")", "boolean"

    def _not(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 1)
        return f"(NOT {self._condition(args[0])})", "boolean"

    def _compare(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 2)
        (ls, lk), (rs, rk) = self.expr(args[0]), self.expr(args[1])
        self._comparable(op, lk, rk)
        return f"({ls} {_COMPARISON[op]} {rs})", "boolean"

    def _arithmetic(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 2)
        (ls, lk), (rs, rk) = self.expr(args[0]), self.expr(args[1])
        if lk != "number" or rk != "number":
            raise InvalidInputError(f"'{op}' needs numbers, got {lk} and {rk}", field="filter")
        return f"({ls} {_ARITHMETIC[op]} {rs})", "number"

    def _like(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 2)
        (ls, lk), (rs, rk) = self.expr(args[0]), self.expr(args[1])
        if lk != "string" or rk != "string":
            raise InvalidInputError(f"LIKE compares strings, got {lk} and {rk}", field="filter")
        return f"({ls} LIKE {rs} ESCAPE '\\')", "boolean"

    def _between(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 3)
        (vs, vk), (ls, lk), (hs, hk) = (self.expr(a) for a in args)
        self._comparable(op, vk, lk)
        self._comparable(op, vk, hk)
        return f"({vs} BETWEEN {ls} AND {hs})", "boolean"

    def _in(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 2)
        vs, vk = self.expr(args[0])
        if not isinstance(args[1], list) or not args[1]:
            raise InvalidInputError("IN needs a non-empty list of values", field="filter")
        items = [self.expr(a) for a in args[1]]
        for _, k in items:
            self._comparable(op, vk, k)
        return f"({vs} IN ({', '.join(s for s, _ in items)}))", "boolean"

    def _isnull(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 1)
        if isinstance(args[0], dict) and args[0].get("property") == GEOMETRY:
            self.out.properties.add(GEOMETRY)
            return f"({self.geometry_sql} IS NULL)", "boolean"
        vs, _ = self.expr(args[0])
        return f"({vs} IS NULL)", "boolean"

    def _function(self, op: str, args: list[Any]) -> tuple[str, str]:
        self._arity(op, args, 1)
        vs, vk = self.expr(args[0])
        if vk != "string":
            raise InvalidInputError(f"{op.upper()} takes a string, got {vk}", field="filter")
        return (f"lower({vs})" if op == "casei" else f"strip_accents({vs})"), "string"

    # -- pieces -----------------------------------------------------------------------------------------------
    def _condition(self, node: Any) -> str:
        sql, kind = self.expr(node)
        if kind != "boolean":
            raise InvalidInputError(f"AND/OR/NOT need conditions, got a {kind} value", field="filter")
        return sql

    def _param(self, value: Any) -> str:
        self.out.params.append(value)
        return "?"

    def _property(self, name: str) -> tuple[str, str]:
        if name == GEOMETRY:
            raise InvalidInputError("the geometry can only be used in spatial functions or IS NULL", field="filter")
        q: Queryable | None = self.collection.queryable(name)
        if q is None:
            names = ", ".join(x.name for x in self.collection.queryables)
            raise InvalidInputError(f"{name!r} is not a queryable of collection {self.collection.id!r} "
                                    f"(queryables: {GEOMETRY}, {names})", field="filter", value=name)
        self.out.properties.add(name)
        kind = {"integer": "number"}.get(q.type, q.type)
        return q.where, kind

    @staticmethod
    def _arity(op: str, args: list[Any], n: int) -> None:
        if len(args) != n:
            raise InvalidInputError(f"{op.upper()} takes {n} argument{'s' if n > 1 else ''}, got {len(args)}",
                                    field="filter")

    @staticmethod
    def _comparable(op: str, a: str, b: str) -> None:
        ok = a == b or {a, b} == {"date", "timestamp"}
        if not ok or a in ("geometry", "array", "boolean") and op not in ("=", "<>", "in"):
            raise InvalidInputError(f"cannot compare a {a} with a {b} ({op})", field="filter")

    def _spatial(self, op: str, args: list[Any]) -> tuple[str, str]:
        if op == "s_dwithin":
            if len(args) not in (3, 4):
                raise InvalidInputError("S_DWITHIN takes (geometry, <geometry>, <distance>[, <units>])",
                                        field="filter")
            distance = args[2]
            if isinstance(distance, bool) or not isinstance(distance, int | float) or distance < 0:
                raise InvalidInputError("S_DWITHIN distance must be a non-negative number", field="filter")
            unit = args[3] if len(args) == 4 else "meters"
            unit = unit.get("property") if isinstance(unit, dict) else unit
            if str(unit).lower() not in _UNITS:
                raise InvalidInputError(f"S_DWITHIN units {unit!r}: use meters or kilometers", field="filter")
            geom = self._geometry_pair(op, args[:2])[1]
            self.out.spatial = True
            self.out.properties.add(GEOMETRY)
            return (f"ST_DWithin({self.geometry_sql}, ST_GeomFromWKB({self._param(geom)}), "
                    f"{self._param(float(distance) * _UNITS[str(unit).lower()])})"), "boolean"
        self._arity(op, args, 2)
        swapped, geom = self._geometry_pair(op, args)
        op = _SWAPPED.get(op, op) if swapped else op
        self.out.spatial = True
        self.out.properties.add(GEOMETRY)
        return f"{_SPATIAL[op]}({self.geometry_sql}, ST_GeomFromWKB({self._param(geom)}))", "boolean"

    def _geometry_pair(self, op: str, args: list[Any]) -> tuple[bool, bytes]:
        """(literal came first, WKB of the literal in the storage CRS) for a property–literal pair."""
        is_prop = [isinstance(a, dict) and a.get("property") == GEOMETRY for a in args]
        if is_prop == [True, False]:
            return False, self._literal(args[1], op)
        if is_prop == [False, True]:
            return True, self._literal(args[0], op)
        raise InvalidInputError(f"{op.upper()} compares the property '{GEOMETRY}' with a geometry literal",
                                field="filter")

    def _literal(self, node: Any, op: str) -> bytes:
        if not isinstance(node, dict):
            raise InvalidInputError(f"{op.upper()}: {node!r} is not a geometry", field="filter")
        try:
            if "bbox" in node:
                b = [float(v) for v in node["bbox"]]
                if len(b) not in (4, 6):
                    raise ValueError("a BBOX has 4 or 6 numbers")
                x0, y0, x1, y1 = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
                geom = shapely.box(x0, y0, x1, y1)
            else:
                geom = shape(node)
        except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad geometries
            raise InvalidInputError(f"{op.upper()}: invalid geometry literal: {exc}", field="filter") from None
        if geom.is_empty or not geom.is_valid:
            reason = "empty" if geom.is_empty else shapely.is_valid_reason(geom)
            raise InvalidInputError(f"{op.upper()}: invalid geometry literal ({reason})", field="filter")
        return shapely.to_wkb(geometry_to_storage(geom, self.filter_crs, self.storage_crs))


def _date(text: Any) -> date:
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise InvalidInputError(f"DATE({text!r}) is not a date (YYYY-MM-DD)", field="filter") from None


def _timestamp(text: Any) -> datetime:
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"TIMESTAMP({text!r}) is not an RFC 3339 date-time", field="filter") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)  # stored timestamps are naive UTC
    return t
