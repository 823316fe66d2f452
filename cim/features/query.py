"""Items of a collection: bbox, datetime, CQL2 filter, paging and CRS → one parametrised SQL query → GeoJSON.

* ``bbox`` (4 or 6 numbers, in ``bbox-crs`` axis order, default CRS84) becomes a constant storage-CRS polygon,
  so DuckDB answers it from the R-tree (``RTREE_INDEX_SCAN``).
* ``datetime`` (RFC 3339 instant or ``start/end`` interval, ``..`` open) selects the rows *valid* during that
  time (see :mod:`cim.features.collections`); without it only current rows are served.
* ``limit`` defaults to 10; values above :data:`MAX_LIMIT` are clamped to it (OGC API – Features Part 1,
  /req/core/fc-limit-response-1: a larger limit is not an error). Paging is ``offset`` + ``limit`` over a stable
  order (the item id); one extra row is read to know whether a ``next`` page exists.
* ``numberReturned`` is always given; ``numberMatched`` only when it is cheap: unfiltered pipe collections
  (cached per catalogue state), and filtered queries on collections of at most :data:`COUNT_LIMIT` rows.
* Geometries leave DuckDB as WKB, are transformed with numpy/pyproj (:mod:`cim.features.crs`) and written by
  GEOS (``shapely.to_geojson``); each feature is serialised once, to a JSON string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import shapely

from cim.errors import InvalidInputError, NotFoundError
from cim.features.collections import Collection, Source, View
from cim.features.cql2 import SqlFilter, parse_filter, to_sql
from cim.features.crs import (
    CRS84,
    OutputCRS,
    StorageBox,
    bbox_to_storage,
    from_storage,
    output_crs,
    parse_bbox,
)
from cim.heights import GeoidModel
from cim.security.policy import PUBLIC_GRID_M

DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
#: numberMatched is counted (a second query) only for collections of at most this many current rows.
COUNT_LIMIT = 100_000


@dataclass
class ItemsRequest:
    """The query parameters of ``/collections/{id}/items`` (strings as received; parsed here)."""

    bbox: str | None = None
    bbox_crs: str | None = None
    datetime: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    filter: str | None = None
    filter_lang: str | None = None
    filter_crs: str | None = None
    crs: str | None = None
    properties: str | None = None


@dataclass
class Feature:
    """One item: id, geometry and properties as JSON text (written by GEOS and DuckDB, spliced here)."""

    id: Any
    geometry: str | None
    properties: str

    def to_json(self) -> str:
        """The GeoJSON Feature as a JSON string."""
        return ('{"type":"Feature","id":' + json.dumps(self.id, ensure_ascii=False)
                + ',"geometry":' + (self.geometry or "null") + ',"properties":' + self.properties + "}")

    def to_dict(self) -> dict[str, Any]:
        """The GeoJSON Feature as a dict."""
        return json.loads(self.to_json())


@dataclass
class Page:
    """A page of items and what the API needs for its links and headers."""

    features: list[Feature]
    crs: OutputCRS
    limit: int
    offset: int
    has_next: bool
    number_matched: int | None = None
    time_stamp: str = field(default_factory=lambda: time_stamp())

    @property
    def number_returned(self) -> int:
        return len(self.features)


def time_stamp() -> str:
    """Now, as the ``timeStamp`` of a response (RFC 3339, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- parameters ----------------------------------------------------------------------------------------------
def clamp_limit(limit: int | None) -> int:
    """``limit`` within 1..MAX_LIMIT (larger values are clamped; < 1 is an error)."""
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1:
        raise InvalidInputError(f"limit {limit} must be at least 1", field="limit", value=limit)
    return min(int(limit), MAX_LIMIT)


def _instant(text: str, *, end: bool) -> datetime | None:
    t = text.strip()
    if t in ("", ".."):
        return None
    try:
        if len(t) == 10:  # a date: the whole day
            d = date.fromisoformat(t)
            start = datetime(d.year, d.month, d.day)
            return start + timedelta(days=1) - timedelta(microseconds=1) if end else start
        v = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"datetime {text!r} is not an RFC 3339 date-time (2025-03-11T08:00:00Z), "
                                "a date, or '..'", field="datetime", value=text) from None
    return v.astimezone(UTC).replace(tzinfo=None) if v.tzinfo else v


def parse_datetime(text: str) -> tuple[datetime | None, datetime | None]:
    """An instant or an interval (``start/end``, either end ``..`` or empty = open) as naive-UTC bounds."""
    parts = text.split("/")
    if len(parts) == 1:
        if text.strip() in ("", ".."):
            raise InvalidInputError("datetime needs an instant or an interval", field="datetime")
        return _instant(text, end=False), _instant(text, end=True)
    if len(parts) != 2:
        raise InvalidInputError(f"datetime {text!r}: an interval is start/end", field="datetime", value=text)
    start, end = _instant(parts[0], end=False), _instant(parts[1], end=True)
    if start and end and start > end:
        raise InvalidInputError(f"datetime {text!r}: the start is after the end", field="datetime", value=text)
    return start, end


def _selected(collection: Collection, properties: str | None) -> list[str] | None:
    if properties is None:
        return None
    names = [p.strip() for p in properties.split(",") if p.strip()]
    known = {q.name for q in collection.queryables}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInputError(f"properties {unknown} are not properties of {collection.id!r} "
                                f"(known: {', '.join(sorted(known))})", field="properties")
    return names


# -- SQL -----------------------------------------------------------------------------------------------------
@dataclass
class _Where:
    parts: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, sql: str, *params: Any) -> None:
        self.parts.append(sql)
        self.params.extend(params)

    @property
    def sql(self) -> str:
        return " AND ".join(f"({p})" for p in self.parts) if self.parts else "TRUE"


def _last_version_at(times: dict[int, datetime], t: datetime | None, default: int) -> int:
    if t is None:
        return default
    at = [v for v, c in times.items() if c <= t]
    return max(at) if at else 0


def _time_clause(view: View, src: Source, datasets: list[str], when: tuple[datetime | None, datetime | None] | None,
                 where: _Where) -> None:
    """Restrict to ``datasets`` and to rows valid at ``when`` (current rows when None)."""
    col = src.dataset_col
    if src.versioning == "catalogue":
        where.add(f"{col} IN ({', '.join('?' for _ in datasets)})", *datasets)
        if when is not None:
            start, end = when
            if end is not None:
                where.add("created_at <= ?", end)
            if start is not None:
                where.add("updated_at >= ?", start)
        return
    clauses, params = [], []
    for d in datasets:
        state = view.registry.datasets[d]
        current = int(state.row["current_version"])
        if when is None:
            if src.versioning == "rows":
                clauses.append(f"{col} = ?")
                params.append(d)
            else:
                clauses.append(f"({col} = ? AND version = ?)")
                params.extend([d, current])
            continue
        vmax = _last_version_at(state.versions, when[1], current)
        vmin = _last_version_at(state.versions, when[0], 0)
        if vmax < 1:
            continue  # the dataset did not exist yet
        if src.versioning == "rows":
            clauses.append(f"({col} = ? AND version_from <= ? AND (version_to IS NULL OR version_to > ?))")
            params.extend([d, vmax, vmin])
        else:
            clauses.append(f"({col} = ? AND version BETWEEN ? AND ?)")
            params.extend([d, vmin, vmax])
    if not clauses:
        where.add("FALSE")
        return
    if src.versioning == "rows" and when is None:
        where.add("version_to IS NULL")
        where.add(f"{col} IN ({', '.join('?' for _ in params)})", *params)
        return
    where.add(" OR ".join(clauses), *params)


def _z_exprs(src: Source) -> tuple[str, str]:
    if src.base_z or src.versioning == "catalogue":
        return "minz", "maxz"
    return f"ST_ZMin({src.geom_sql})", f"ST_ZMax({src.geom_sql})"


@dataclass
class _Plan:
    where: _Where
    datasets: list[str]
    coarse: frozenset[str]
    filter: SqlFilter | None


def _plan(view: View, collection: Collection, req: ItemsRequest, storage_crs: str, geoid: GeoidModel) -> _Plan:
    src = collection.source
    assert src is not None
    where = _Where()
    if src.where != "TRUE":
        where.add(src.where, *src.params)
    box: StorageBox | None = None
    if req.bbox is not None:
        box = bbox_to_storage(parse_bbox(req.bbox), output_crs(req.bbox_crs or CRS84, storage_crs), storage_crs,
                              geoid)
    elif req.bbox_crs is not None:
        raise InvalidInputError("bbox-crs is given without bbox", field="bbox-crs")
    flt: SqlFilter | None = None
    if req.filter is not None:
        tree = parse_filter(req.filter, req.filter_lang)
        flt = to_sql(tree, collection, geometry_sql=src.geom_sql, storage_crs=storage_crs,
                     filter_crs=output_crs(req.filter_crs or CRS84, storage_crs))
    elif req.filter_lang is not None or req.filter_crs is not None:
        raise InvalidInputError("filter-lang/filter-crs are given without filter", field="filter")
    when = parse_datetime(req.datetime) if req.datetime is not None else None
    datasets = list(view.registry.member_datasets(collection, list(view.visible)))
    withheld = {q.name for q in collection.queryables if q.withheld}
    if flt is not None and flt.properties & withheld:  # coarse viewers may not probe withheld values
        datasets = [d for d in datasets if d not in view.coarse]
    _time_clause(view, src, datasets, when, where)
    if box is not None:
        where.add(f"ST_Intersects({src.geom_sql}, ST_GeomFromWKB(?))", shapely.to_wkb(box.area))
        if box.zmin is not None:
            zlo, zhi = _z_exprs(src)
            where.add(f"{zhi} >= ? AND {zlo} <= ?", box.zmin, box.zmax)
    if flt is not None:
        where.add(flt.sql, *flt.params)
    return _Plan(where, datasets, view.coarse & set(datasets), flt)


def _props_sql(collection: Collection, names: list[str] | None) -> str:
    """SQL building the properties object in DuckDB (NaN/inf → null, timestamps as RFC 3339)."""
    src = collection.source
    assert src is not None
    parts = []
    for q in collection.queryables:
        if names is not None and q.name not in names:
            continue
        expr = q.select
        if q.type == "number":
            expr = f"CASE WHEN isfinite({expr}) THEN {expr} END"
        elif q.type == "timestamp":
            expr = f"strftime({expr}, '%Y-%m-%dT%H:%M:%S.%fZ')"
        parts.append(f'"{q.name}" := {expr}')
    if src.count_table and names is None:
        parts.append('"attrs" := attrs')
    return f"to_json(struct_pack({', '.join(parts)}))" if parts else "'{}'"


def _select_list(collection: Collection, names: list[str] | None) -> str:
    src = collection.source
    assert src is not None
    return ", ".join([f"{src.id_sql} AS __id", f"ST_AsWKB({src.geom_sql}) AS __geom",
                      f"{src.base_z or 'NULL'} AS __z", f"{src.dataset_col} AS __ds",
                      f"{_props_sql(collection, names)} AS __props"])


def query_items(store: Any, view: View, collection: Collection, req: ItemsRequest, *, storage_crs: str,
                geoid: GeoidModel) -> Page:
    """One page of ``collection``'s items for ``req``.

    Raises:
        InvalidInputError: a bad bbox, datetime, CRS, filter or property name (the message names it).
    """
    src = collection.source
    if src is None:
        raise InvalidInputError(f"{collection.id!r} is a records collection", field="collectionId")
    crs = output_crs(req.crs or CRS84, storage_crs)
    limit, offset = clamp_limit(req.limit), int(req.offset or 0)
    if offset < 0:
        raise InvalidInputError("offset must be 0 or more", field="offset", value=offset)
    names = _selected(collection, req.properties)
    plan = _plan(view, collection, req, storage_crs, geoid)
    if not plan.datasets:
        return Page([], crs, limit, offset, False, 0)
    select = _select_list(collection, names)
    sql = (f"SELECT {select} FROM {src.table} WHERE {plan.where.sql} ORDER BY {src.id_sql} "
           f"LIMIT ? OFFSET ?")
    cur = store.read()
    try:
        rows = cur.execute(sql, [*plan.where.params, limit + 1, offset]).fetchall()
        matched = _number_matched(cur, view, collection, req, plan)
    finally:
        cur.close()
    has_next = len(rows) > limit
    rows = rows[:limit]
    features = _features(rows, collection, plan.coarse, crs, storage_crs, geoid)
    if matched is None and not has_next:
        matched = offset + len(features)  # the last page tells the total for free
    return Page(features, crs, limit, offset, has_next, matched)


def _number_matched(cur: Any, view: View, collection: Collection, req: ItemsRequest, plan: _Plan) -> int | None:
    src = collection.source
    assert src is not None
    plain = req.bbox is None and req.filter is None and req.datetime is None
    cached = view.registry.count(src, plan.datasets)
    if plain and cached is not None:
        return cached
    if cached is not None and cached > COUNT_LIMIT:
        return None
    row = cur.execute(f"SELECT count(*) FROM {src.table} WHERE {plan.where.sql}", plan.where.params).fetchone()
    return int(row[0])


def get_item(store: Any, view: View, collection: Collection, item_id: str, *, crs: str | None, storage_crs: str,
             geoid: GeoidModel) -> Feature:
    """One item by id, whatever its version (a closed pipe row keeps its id and shows ``version_to``).

    Raises:
        NotFoundError: no such item among the datasets the caller may read.
    """
    src = collection.source
    if src is None:
        raise NotFoundError(f"{collection.id!r} is a records collection")
    out_crs = output_crs(crs or CRS84, storage_crs)
    key: Any = item_id
    if src.integer_ids:
        try:
            key = int(item_id)
        except ValueError:
            raise NotFoundError(f"no item {item_id!r} in {collection.id!r} (ids are integers)") from None
        if not -(2**63) <= key < 2**63:
            raise NotFoundError(f"no item {item_id!r} in {collection.id!r}")
    datasets = view.registry.member_datasets(collection, list(view.visible))
    if not datasets:
        raise NotFoundError(f"no item {item_id!r} in {collection.id!r}")
    select = _select_list(collection, None)
    where = _Where()
    if src.where != "TRUE":
        where.add(src.where, *src.params)
    where.add(f"{src.dataset_col} IN ({', '.join('?' for _ in datasets)})", *datasets)
    where.add(f"{src.id_sql} = ?", key)
    cur = store.read()
    try:
        rows = cur.execute(f"SELECT {select} FROM {src.table} WHERE {where.sql} LIMIT 1", where.params).fetchall()
    finally:
        cur.close()
    if not rows:
        raise NotFoundError(f"no item {item_id!r} in collection {collection.id!r}")
    coarse = view.coarse & set(datasets)
    return _features(rows, collection, coarse, out_crs, storage_crs, geoid)[0]


# -- GeoJSON -------------------------------------------------------------------------------------------------
def _features(rows: list[tuple], collection: Collection, coarse: frozenset[str], crs: OutputCRS,
              storage_crs: str, geoid: GeoidModel) -> list[Feature]:
    if not rows:
        return []
    geoms = _geometries(rows, coarse, crs, storage_crs, geoid)
    out = []
    for row, geom in zip(rows, geoms, strict=True):
        props = row[4]
        if row[3] in coarse:  # withheld values leave the object for coarse viewers
            withheld = {q.name for q in collection.queryables if q.withheld} | {"attrs"}
            props = json.dumps({k: v for k, v in json.loads(props).items() if k not in withheld},
                               ensure_ascii=False, separators=(",", ":"))
        out.append(Feature(row[0], geom, props))
    return out


def _geometries(rows: list[tuple], coarse: frozenset[str], crs: OutputCRS, storage_crs: str,
                geoid: GeoidModel) -> list[str | None]:
    """GeoJSON geometry strings of the rows' WKB, transformed to ``crs`` (coarse rows snapped, 2D)."""
    wkb = np.array([r[1] for r in rows], dtype=object)
    present = np.array([w is not None for w in wkb])
    geoms = np.full(len(rows), None, dtype=object)
    if present.any():
        geoms[present] = shapely.from_wkb(wkb[present])
    base_z = np.array([np.nan if r[2] is None else r[2] for r in rows], dtype="f8")
    is_coarse = np.array([r[3] in coarse for r in rows])
    todo = present & ~shapely.has_z(geoms) & np.isfinite(base_z) & ~is_coarse
    if todo.any():  # 2D footprints placed at their base height
        geoms[todo] = [shapely.force_3d(g, z) for g, z in zip(geoms[todo], base_z[todo], strict=True)]
    if is_coarse.any():
        geoms[is_coarse & present] = [_coarsen(g) for g in geoms[is_coarse & present]]
    flat = present & ~shapely.has_z(geoms)
    if crs.kind == "geocentric" and flat.any():  # ECEF needs a height: 2D shapes sit at 1985 height 0
        geoms[flat] = shapely.force_3d(geoms[flat], 0.0)
    for three_d in (True, False):
        sel = present & (shapely.has_z(geoms) == three_d)
        if not sel.any():
            continue
        coords = shapely.get_coordinates(geoms[sel], include_z=three_d)
        moved = _round(from_storage(coords, storage_crs, crs, geoid), crs)
        geoms[sel] = shapely.set_coordinates(geoms[sel].copy(), moved)
    text = np.full(len(rows), None, dtype=object)
    if present.any():
        text[present] = shapely.to_geojson(geoms[present])
    return list(text)


def _coarsen(geom: shapely.Geometry, grid: float = PUBLIC_GRID_M) -> shapely.Geometry:
    flat = shapely.force_2d(geom)
    return shapely.transform(flat, lambda c: (np.floor(c / grid) + 0.5) * grid)


def _round(coords: np.ndarray, crs: OutputCRS) -> np.ndarray:
    out = np.array(coords, dtype="f8")
    horizontal = 9 if crs.kind == "geographic" else 4
    out[:, :2] = np.round(out[:, :2], horizontal)
    if out.shape[1] > 2:
        out[:, 2] = np.round(out[:, 2], 4)
    return out
