"""The change feed: what changed, dataset version by dataset version, paged and resumable.

Versions are read in the order ``(created_at, dataset_id, version)``. A page never spans two versions, so within
a page each feature appears at most once and a mirror may apply ``added``, ``modified`` and ``deleted`` in
any order; pages of one version follow each other. Per version and collection:

==================  =========================================================================================
collection          entries
==================  =========================================================================================
``datasets``        the catalogue record: added (first version), modified (later), deleted (action delete)
``pipe-points``     rows with ``version_from = v`` (added; modified when a row of the same feature_id closed
``pipe-segments``   at ``v``) and rows closed at ``v`` without a successor (deleted)
``bim-elements``    elements of model version ``v`` against the previous version (GlobalId; geometry or
                    property hash changed = modified)
``features``        generic features, versioned like the pipe rows
==================  =========================================================================================

Entry ids are the stable ``feature_id`` within the dataset (GlobalId for BIM, the dataset id for
``datasets``). With ``as_features`` added/modified entries carry the GeoJSON feature (CGCS2000 lon/lat, 1985
heights as z); otherwise ids only. The cursor is opaque (URL-safe base64 JSON) and names the next entry to
read; past versions never change, so a cursor stays valid for ever.

Example::

    page = read_changes(store, since=datetime(2026, 1, 1), limit=500)
    while not page.complete:
        page = read_changes(store, cursor=page.next_cursor, limit=500)
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import shapely

from cim.crs import to_lonlat
from cim.errors import InvalidInputError
from cim.features.collections import POINT_PROPERTIES, SEGMENT_PROPERTIES

COLLECTIONS: tuple[str, ...] = ("datasets", "pipe-points", "pipe-segments", "bim-elements", "features")
MAX_LIMIT = 10_000
_PIPE_TABLES = {"pipe-points": ("pipe_points", POINT_PROPERTIES), "pipe-segments": ("pipe_segments", SEGMENT_PROPERTIES)}
_BIM_COLS = ("ifc_class", "predefined_type", "name", "object_type", "tag", "storey_name", "building_global_id",
             "materials", "color", "minz", "maxz")
_DATASET_COLS = ("title", "kind", "category", "grade", "secret", "source_crs", "storage_crs", "vertical_crs",
                 "current_version", "created_at", "updated_at")


@dataclass(frozen=True)
class Position:
    """Where a reader stands: the version (created_at, dataset, version), collection index and offset."""

    t: datetime | None = None
    d: str = ""
    v: int = 0
    k: int = 0
    o: int = 0
    dataset: str | None = None  # filter: one dataset only
    min_version: int = 0  # filter: versions above this one (with ``dataset``)
    collections: tuple[str, ...] = COLLECTIONS

    def encode(self) -> str:
        doc = {"t": self.t.isoformat() if self.t else None, "d": self.d, "v": self.v, "k": self.k, "o": self.o,
               "ds": self.dataset, "mv": self.min_version, "cs": list(self.collections)}
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            doc = json.loads(raw)
            pos = cls(datetime.fromisoformat(doc["t"]) if doc["t"] else None, str(doc["d"]), int(doc["v"]),
                      int(doc["k"]), int(doc["o"]), doc.get("ds"), int(doc.get("mv", 0)), tuple(doc["cs"]))
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"not a change-feed cursor ({type(exc).__name__})", field="cursor") from None
        if pos.k < 0 or pos.o < 0 or set(pos.collections) - set(COLLECTIONS):
            raise InvalidInputError("not a change-feed cursor (out of range)", field="cursor")
        return pos


@dataclass
class ChangePage:
    """One page: part of one dataset version's changes, grouped by collection and kind of change."""

    dataset: str | None
    version: int | None
    created_at: datetime | None
    action: str | None
    collections: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    next_cursor: str = ""
    complete: bool = True  # nothing more to read now (resume later from next_cursor)
    entries: int = 0

    @property
    def has_entries(self) -> bool:
        return self.entries > 0

    def to_dict(self) -> dict[str, Any]:
        """The page as ``docs/linkage/changes.schema.json`` describes it."""
        return {"schema": "cim-linkage/changes/1", "dataset": self.dataset, "version": self.version,
                "created_at": self.created_at.isoformat() + "Z" if self.created_at else None,
                "action": self.action, "entries": self.entries, "collections": self.collections,
                "next_cursor": self.next_cursor, "complete": self.complete}


def start_position(*, since: datetime | None = None, dataset: str | None = None, since_version: int | None = None,
                   collections: tuple[str, ...] | None = None) -> Position:
    """The position before the first change after ``since`` (a time) or after ``dataset``'s ``since_version``."""
    cols = tuple(collections) if collections else COLLECTIONS
    unknown = set(cols) - set(COLLECTIONS)
    if unknown:
        raise InvalidInputError(f"unknown collections {sorted(unknown)} (known: {', '.join(COLLECTIONS)})",
                                field="collections")
    if since_version is not None and dataset is None:
        raise InvalidInputError("since_version needs a dataset (versions are per dataset)", field="since_version")
    t = since.replace(tzinfo=None) - (since.utcoffset() or timedelta()) if since else None
    return Position(t + timedelta(microseconds=1) if t else None, dataset=dataset,
                    min_version=since_version or 0, collections=tuple(c for c in COLLECTIONS if c in cols))


def read_changes(store: Any, *, cursor: str | None = None, since: datetime | None = None,
                 dataset: str | None = None, since_version: int | None = None,
                 collections: tuple[str, ...] | None = None, limit: int = 500, as_features: bool = True,
                 visible: set[str] | None = None) -> ChangePage:
    """The next page of changes (at most ``limit`` entries, one dataset version) from ``cursor`` or from the
    start given by ``since`` / ``dataset`` + ``since_version`` / ``collections``. ``visible`` limits the feed
    to the datasets a caller may read (others are skipped)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be 1..{MAX_LIMIT}", field="limit")
    pos = Position.decode(cursor) if cursor else start_position(
        since=since, dataset=dataset, since_version=since_version, collections=collections)
    cur = store.read()
    try:
        return _read(cur, pos, limit, as_features, visible)
    finally:
        cur.close()


def _versions(cur: Any, pos: Position, visible: set[str] | None, limit: int = 1000
              ) -> list[tuple[datetime, str, int, str, str]]:
    """The next versions from ``pos`` (only datasets in ``visible`` when given), in feed order."""
    where, params = ["TRUE"], []
    if pos.t is not None:
        where.append("(v.created_at > ? OR (v.created_at = ? AND (v.dataset_id > ? OR (v.dataset_id = ? AND "
                     "v.version >= ?))))")
        params += [pos.t, pos.t, pos.d, pos.d, pos.v]
    if pos.dataset is not None:
        where.append("v.dataset_id = ? AND v.version > ?")
        params += [pos.dataset, pos.min_version]
    if visible is not None:
        where.append("v.dataset_id IN (SELECT unnest(?::VARCHAR[]))")
        params.append(sorted(visible))
    return cur.execute(
        f"""SELECT v.created_at, v.dataset_id, v.version, v.action, coalesce(d.storage_crs, '')
            FROM dataset_versions v LEFT JOIN datasets d ON d.id = v.dataset_id
            WHERE {' AND '.join(where)} ORDER BY v.created_at, v.dataset_id, v.version LIMIT {int(limit)}""",
        params).fetchall()


def _read(cur: Any, pos: Position, limit: int, as_features: bool, visible: set[str] | None) -> ChangePage:
    while True:
        versions = _versions(cur, pos, visible)
        if not versions:
            return ChangePage(None, None, None, None, next_cursor=pos.encode(), complete=True)
        for t, d, v, action, crs in versions:
            at = replace(pos, t=t, d=d, v=v) if (t, d, v) == (pos.t, pos.d, pos.v) else replace(pos, t=t, d=d, v=v,
                                                                                                k=0, o=0)
            page = ChangePage(d, v, t, action)
            k, o, room = at.k, at.o, limit
            while k < len(at.collections) and room > 0:
                coll = at.collections[k]
                rows = _entries(cur, coll, d, v, action, room + 1, o)
                taken = rows[:room]
                if taken:
                    page.collections[coll] = _group(cur, coll, d, v, crs, taken, as_features)
                    page.entries += len(taken)
                    room -= len(taken)
                if len(rows) > len(taken):  # the page is full inside this collection
                    o += len(taken)
                    break
                k, o = k + 1, 0
            if page.has_entries:
                nxt = replace(at, k=k, o=o) if k < len(at.collections) else replace(
                    at, v=v + 1, k=0, o=0)  # after (t, d, v): the same time and dataset, a higher version
                page.next_cursor = nxt.encode()
                page.complete = k >= len(at.collections) and not _versions(cur, nxt, visible, 1)
                return page
            pos = replace(at, v=v + 1, k=0, o=0)
        # the whole batch of versions had nothing (filtered collections): continue after it


def _entries(cur: Any, coll: str, d: str, v: int, action: str, limit: int, offset: int) -> list[tuple[str, str]]:
    """``(change, id)`` of one collection in version ``v`` of ``d``, ordered by id, ``limit`` from ``offset``."""
    if coll == "datasets":
        change = "deleted" if action == "delete" else ("added" if v == 1 else "modified")
        return [(change, d)][offset:offset + limit]
    if coll in _PIPE_TABLES or coll == "features":
        table = _PIPE_TABLES[coll][0] if coll in _PIPE_TABLES else "features"
        key = "feature_id" if coll in _PIPE_TABLES else "collection || '/' || feature_id"
        sql = f"""WITH a AS (SELECT {key} AS id FROM {table} WHERE dataset_id = ? AND version_from = ?),
                       c AS (SELECT {key} AS id FROM {table} WHERE dataset_id = ? AND version_to = ?)
                  SELECT CASE WHEN c.id IS NULL THEN 'added' WHEN a.id IS NULL THEN 'deleted' ELSE 'modified' END,
                         coalesce(a.id, c.id) AS id
                  FROM a FULL OUTER JOIN c ON a.id = c.id ORDER BY id LIMIT ? OFFSET ?"""
        return cur.execute(sql, [d, v, d, v, limit, offset]).fetchall()
    prev = cur.execute("SELECT max(version) FROM bim_models WHERE dataset_id = ? AND version < ?", [d, v]).fetchone()
    sql = """WITH a AS (SELECT global_id, geometry_hash, properties_hash FROM bim_elements
                        WHERE dataset_id = ? AND version = ?),
                  p AS (SELECT global_id, geometry_hash, properties_hash FROM bim_elements
                        WHERE dataset_id = ? AND version = ?)
             SELECT CASE WHEN p.global_id IS NULL THEN 'added' WHEN a.global_id IS NULL THEN 'deleted'
                         ELSE 'modified' END, coalesce(a.global_id, p.global_id) AS id
             FROM a FULL OUTER JOIN p ON a.global_id = p.global_id
             WHERE a.global_id IS NULL OR p.global_id IS NULL OR a.geometry_hash IS DISTINCT FROM p.geometry_hash
                OR a.properties_hash IS DISTINCT FROM p.properties_hash
             ORDER BY id LIMIT ? OFFSET ?"""
    return cur.execute(sql, [d, v, d, prev[0] if prev else None, limit, offset]).fetchall()


def _group(cur: Any, coll: str, d: str, v: int, crs: str, rows: list[tuple[str, str]],
           as_features: bool) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"added": [], "modified": [], "deleted": []}
    live = [fid for change, fid in rows if change != "deleted"]
    feats = _features(cur, coll, d, v, crs, live) if as_features and live else {}
    for change, fid in rows:
        if change == "deleted" or not as_features:
            out[change].append(fid)
        else:
            out[change].append(feats.get(fid) or {"type": "Feature", "id": fid, "geometry": None,
                                                  "properties": {"dataset_id": d}})
    return out


def _features(cur: Any, coll: str, d: str, v: int, crs: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """GeoJSON features (CGCS2000 lon/lat, 1985 heights) of the live entries ``ids``."""
    if coll == "datasets":
        row = cur.execute(f"SELECT {', '.join(_DATASET_COLS)}, minx, miny, maxx, maxy FROM datasets WHERE id = ?",
                          [d]).fetchone()
        if row is None:
            return {}
        props = dict(zip(_DATASET_COLS, row[:len(_DATASET_COLS)], strict=True))
        box = row[len(_DATASET_COLS):]
        wkb = shapely.to_wkb(shapely.box(*box)) if None not in box else None
        return _to_geojson([(d, wkb, props)], crs)
    if coll in _PIPE_TABLES:
        table, queryables = _PIPE_TABLES[coll]
        cols = [q.name for q in queryables if q.name not in ("version_to",)]
        sql = (f"SELECT feature_id, ST_AsWKB(geom), {', '.join(cols)} FROM {table} "
               "WHERE dataset_id = ? AND version_from = ? AND feature_id IN (SELECT unnest(?::VARCHAR[]))")
    elif coll == "features":
        cols = ["collection", "feature_id", "attrs"]
        sql = ("SELECT collection || '/' || feature_id, ST_AsWKB(geom), collection, feature_id, attrs "
               "FROM features WHERE dataset_id = ? AND version_from = ? "
               "AND collection || '/' || feature_id IN (SELECT unnest(?::VARCHAR[]))")
    else:
        cols = ["global_id", *_BIM_COLS]
        sql = (f"SELECT global_id, ST_AsWKB(footprint), {', '.join(cols)} FROM bim_elements "
               "WHERE dataset_id = ? AND version = ? AND global_id IN (SELECT unnest(?::VARCHAR[]))")
    rows = cur.execute(sql, [d, v, ids]).fetchall()
    return _to_geojson([(r[0], r[1], {"dataset_id": d, **dict(zip(cols, r[2:], strict=True))}) for r in rows], crs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat() + "Z"
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _to_geojson(items: list[tuple[str, Any, dict[str, Any]]], crs: str) -> dict[str, dict[str, Any]]:
    wkb = [bytes(w) if w is not None else None for _, w, _ in items]
    geoms = np.array([shapely.from_wkb(w) if w is not None else None for w in wkb], dtype=object)
    present = np.array([g is not None for g in geoms], dtype=bool)
    if present.any() and crs:
        for three_d in (True, False):
            sel = present & (shapely.has_z(geoms) == three_d)
            if not sel.any():
                continue
            coords = shapely.get_coordinates(geoms[sel], include_z=three_d)
            lon, lat = to_lonlat(coords[:, 0], coords[:, 1], crs)
            moved = np.column_stack([np.round(lon, 9), np.round(lat, 9), *([np.round(coords[:, 2], 3)]
                                                                            if three_d else [])])
            geoms[sel] = shapely.set_coordinates(geoms[sel].copy(), moved)
    out = {}
    for (fid, _, props), geom in zip(items, geoms, strict=True):
        out[fid] = {"type": "Feature", "id": fid,
                    "geometry": json.loads(shapely.to_geojson(geom)) if geom is not None else None,
                    "properties": {k: _jsonable(v) for k, v in props.items()}}
    return out
