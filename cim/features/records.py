"""The catalogue: OGC API – Records records for datasets and services, with CJJ/T 315 metadata.

Every visible dataset gets a ``dataset`` record; every feature collection and every 3D Tiles tileset gets a
``service`` record. Besides the Records core properties (type, title, description, keywords, themes,
formats, created, updated, language, rights) each record carries ``cjjt315``, the metadata sections
CJJ/T 315-2022 defines (元数据: identification, extent, quality, time, spatial reference, distribution)
plus the data grade and secrecy of GB/T 43697-2024 and mapping-secrecy rules.

Records are built in Python from the cached registry (a catalogue has hundreds of entries, not millions)
and queried with the Records core parameters: ``bbox`` (CRS84), ``datetime``, ``q``, ``type``, ``ids``,
``limit``/``offset``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cim.errors import InvalidInputError, NotFoundError
from cim.features.collections import CATALOGUE, Collection, View
from cim.features.crs import parse_bbox, supported_codes
from cim.store.duckdb_ import json_value

RECORD_CORE = "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/record-core"
GEOJSON = "application/geo+json"
#: Media type of a 3D Tiles tileset.json (as in OGC API – 3D GeoVolumes drafts).
TILES_3D = "application/json+3dtiles"


@dataclass(frozen=True)
class Urls:
    """Where links point: the OGC API root (``.../ogc``) and the site root (for ``/tiles/...``)."""

    ogc: str
    site: str


def _iso(t: Any) -> str | None:
    return t.isoformat() + "Z" if isinstance(t, datetime) else None


def _polygon(bbox: tuple[float, float, float, float] | list[float] | None) -> dict[str, Any] | None:
    if not bbox:
        return None
    x0, y0, x1, y1 = bbox
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


def _dataset_record(view: View, dataset_id: str, urls: Urls) -> dict[str, Any]:
    state = view.registry.datasets[dataset_id]
    row = state.row
    versions = sorted(state.versions.items())
    meta = json_value(row.get("metadata")) or {}
    provenance = json_value(row.get("provenance")) or {}
    qc = meta.get("qc") if isinstance(meta, dict) else None
    members = [c for c in view.collections.values()
               if c.source is not None and dataset_id in view.registry.member_datasets(c, [dataset_id])
               and not c.id.startswith(("pointclouds", "rasters", "meshes"))]
    quoted = dataset_id.replace("'", "''")
    links: list[dict[str, Any]] = [
        {"rel": "self", "href": f"{urls.ogc}/collections/{CATALOGUE}/items/dataset:{dataset_id}", "type": GEOJSON},
        {"rel": "describedby", "href": f"{urls.ogc}/collections/datasets/items/{dataset_id}", "type": GEOJSON,
         "title": "dataset extent feature"},
    ]
    for c in members:
        if c.source and c.source.table != "datasets" and c.source.category is None:
            links.append({"rel": "items", "type": GEOJSON, "title": f"{c.title} (this dataset)",
                          "href": f"{urls.ogc}/collections/{c.id}/items?filter=dataset_id%3D%27{quoted}%27"})
            links.extend({"rel": "alternate", "type": TILES_3D,
                          "title": "3D Tiles 1.1 tileset", "href": urls.site + t} for t in c.tilesets)
    bbox = state.bbox
    kind = row.get("kind")
    return {
        "id": f"dataset:{dataset_id}",
        "type": "Feature",
        "conformsTo": [RECORD_CORE],
        "time": {"interval": [_iso(row.get("created_at")), _iso(row.get("updated_at"))]},
        "geometry": _polygon(bbox),
        "properties": {
            "type": "dataset",
            "title": row.get("title"),
            "description": f"{row.get('title')} — {kind} dataset, version {row.get('current_version')}",
            "keywords": [k for k in (kind, row.get("category"), row.get("grade"), "CIM") if k],
            "themes": [{"scheme": "CJJ/T 315-2022 CIM 数据资源体系", "concepts": [{"id": row.get("category")}]}],
            "language": {"code": "zh"},
            "created": _iso(row.get("created_at")),
            "updated": _iso(row.get("updated_at")),
            "formats": [{"name": "GeoJSON", "mediaType": GEOJSON}, {"name": "3D Tiles 1.1"}],
            "rights": f"数据分级 {row.get('grade')} (GB/T 43697-2024); {'涉密' if row.get('secret') else '非涉密'}",
            "cjjt315": {
                "identification": {"id": dataset_id, "title": row.get("title"), "abstract": row.get("title"),
                                   "keywords": [k for k in (kind, row.get("category")) if k],
                                   "category": row.get("category"), "kind": kind},
                "extent": {"bbox_crs84": list(bbox) if bbox else None,
                           "bbox_storage": [row.get("minx"), row.get("miny"), row.get("maxx"), row.get("maxy")],
                           "height_range_1985": [row.get("minz"), row.get("maxz")]},
                "quality": {"qc": qc, "versions": [{"version": v, "qc": json_value(q)} for v, q in _qc(view, dataset_id)]},
                "time": {"created": _iso(row.get("created_at")), "updated": _iso(row.get("updated_at")),
                         "current_version": row.get("current_version"),
                         "versions": [{"version": v, "created": _iso(t)} for v, t in versions]},
                "crs": {"source": row.get("source_crs"), "storage": row.get("storage_crs"),
                        "vertical": row.get("vertical_crs"), "vertical_name": "1985国家高程基准",
                        "offered": supported_codes(view.registry.storage_crs)},
                "distribution": {"links": [lk for lk in links if lk["rel"] != "self"]},
                "grade": {"grade": row.get("grade"), "secret": bool(row.get("secret")),
                          "basis": "GB/T 43697-2024 数据分类分级; 测绘地理信息保密规定"},
                "provenance": {"sources": len(provenance.get("sources", [])) if isinstance(provenance, dict) else None},
            },
        },
        "links": links,
    }


def _qc(view: View, dataset_id: str) -> list[tuple[int, Any]]:
    return list(view.registry.dataset_qc.get(dataset_id, []))


def _service_record(view: View, collection: Collection, urls: Urls) -> dict[str, Any]:
    ext = view.extent(collection)
    bbox = ext.get("spatial", {}).get("bbox", [None])[0]
    interval = ext.get("temporal", {}).get("interval", [[None, None]])[0]
    href = f"{urls.ogc}/collections/{collection.id}"
    links = [{"rel": "self", "href": f"{urls.ogc}/collections/{CATALOGUE}/items/collection:{collection.id}",
              "type": GEOJSON},
             {"rel": "collection", "href": href, "type": "application/json", "title": collection.title}]
    if collection.source is not None:
        links.append({"rel": "items", "href": href + "/items", "type": GEOJSON})
    links.extend({"rel": "alternate", "href": urls.site + t, "type": TILES_3D,
                  "title": "3D Tiles 1.1 tileset"} for t in collection.tilesets)
    datasets = view.registry.member_datasets(collection, list(view.visible)) if collection.source else []
    return {
        "id": f"collection:{collection.id}",
        "type": "Feature",
        "conformsTo": [RECORD_CORE],
        "time": {"interval": interval} if interval[0] else None,
        "geometry": _polygon(bbox),
        "properties": {
            "type": "service",
            "title": collection.title,
            "description": collection.description,
            "keywords": list(collection.keywords),
            "language": {"code": "zh"},
            "formats": [{"name": "GeoJSON", "mediaType": GEOJSON}, {"name": "HTML", "mediaType": "text/html"}],
            "cjjt315": {
                "identification": {"id": collection.id, "title": collection.title,
                                   "abstract": collection.description, "category": "服务"},
                "extent": {"bbox_crs84": bbox},
                "time": {"interval": interval},
                "crs": {"offered": supported_codes(view.registry.storage_crs), "default": "OGC:CRS84"},
                "distribution": {"protocol": "OGC API - Features 1.0 / Records 1.0",
                                 "links": [lk for lk in links if lk["rel"] != "self"]},
                "datasets": datasets,
            },
        },
        "links": links,
    }


def _tileset_records(view: View, urls: Urls) -> list[dict[str, Any]]:
    out = []
    seen: set[str] = set()
    for c in view.collections.values():
        for t in c.tilesets:
            if t in seen:
                continue
            seen.add(t)
            name = t.strip("/").split("/")[1] if t.count("/") > 2 else t
            ext = view.extent(c)
            bbox = ext.get("spatial", {}).get("bbox", [None])[0]
            out.append({
                "id": f"tileset:{name}", "type": "Feature", "conformsTo": [RECORD_CORE], "time": None,
                "geometry": _polygon(bbox),
                "properties": {
                    "type": "service", "title": f"3D Tiles 1.1: {name}",
                    "description": f"3D Tiles 1.1 tileset of {name} (glTF 2.0 content, ECEF EPSG:4978, ellipsoidal "
                                   "heights from 1985 heights + geoid).",
                    "keywords": ["3D Tiles", name], "language": {"code": "zh"},
                    "formats": [{"name": "3D Tiles 1.1", "mediaType": "application/json"}],
                    "cjjt315": {"identification": {"id": name, "category": "三维服务"},
                                "crs": {"content": "EPSG:4978", "heights": "ellipsoidal"},
                                "distribution": {"protocol": "OGC 3D Tiles 1.1", "href": urls.site + t}},
                },
                "links": [{"rel": "self", "href": f"{urls.ogc}/collections/{CATALOGUE}/items/tileset:{name}",
                           "type": GEOJSON},
                          {"rel": "enclosure", "href": urls.site + t, "type": TILES_3D}],
            })
    return out


def all_records(view: View, urls: Urls) -> list[dict[str, Any]]:
    """Every record: datasets, then feature-collection services, then tilesets."""
    out = [_dataset_record(view, d, urls) for d in view.visible]
    out += [_service_record(view, c, urls) for c in view.collections.values() if c.id != CATALOGUE]
    return out + _tileset_records(view, urls)


def get_record(view: View, record_id: str, urls: Urls) -> dict[str, Any]:
    """One record by id (``dataset:<id>``, ``collection:<id>``, ``tileset:<name>``); raises NotFoundError."""
    for r in all_records(view, urls):
        if r["id"] == record_id:
            return r
    raise NotFoundError(f"no record {record_id!r} in the catalogue")


def _overlaps(geom: dict[str, Any] | None, box: tuple[float, ...]) -> bool:
    if geom is None:
        return False
    ring = geom["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    x0, y0, x1, y1 = (box[0], box[1], box[2], box[3]) if len(box) == 4 else (box[0], box[1], box[3], box[4])
    return not (max(xs) < x0 or min(xs) > x1 or max(ys) < y0 or min(ys) > y1)


def _in_time(rec: dict[str, Any], start: datetime | None, end: datetime | None) -> bool:
    interval = (rec.get("time") or {}).get("interval")
    if not interval:
        return False
    lo = datetime.fromisoformat(interval[0].rstrip("Z")) if interval[0] else None
    hi = datetime.fromisoformat(interval[1].rstrip("Z")) if len(interval) > 1 and interval[1] else None
    return not ((end is not None and lo is not None and lo > end) or (start is not None and hi is not None
                                                                      and hi < start))


def search_records(view: View, urls: Urls, *, bbox: str | None = None, when: tuple[Any, Any] | None = None,
                   q: str | None = None, types: str | None = None, ids: str | None = None) -> list[dict[str, Any]]:
    """Records matching the Records core query parameters (all given ones must hold; ``q`` terms: any)."""
    records = all_records(view, urls)
    if bbox is not None:
        box = parse_bbox(bbox)
        records = [r for r in records if _overlaps(r.get("geometry"), box)]
    if when is not None:
        records = [r for r in records if _in_time(r, *when)]
    if q is not None:
        terms = [t.strip().lower() for t in q.split(",") if t.strip()]
        if not terms:
            raise InvalidInputError("q needs at least one search term", field="q")

        def text(r: dict[str, Any]) -> str:
            p = r["properties"]
            return " ".join([str(p.get("title") or ""), str(p.get("description") or ""),
                             *map(str, p.get("keywords") or [])]).lower()

        records = [r for r in records if any(t in text(r) for t in terms)]
    if types is not None:
        wanted = {t.strip() for t in types.split(",") if t.strip()}
        records = [r for r in records if r["properties"]["type"] in wanted]
    if ids is not None:
        wanted = {t.strip() for t in ids.split(",") if t.strip()}
        records = [r for r in records if r["id"] in wanted]
    return records
