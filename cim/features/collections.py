"""The feature collections the OGC API offers, built from the store catalogue.

=========================  ======================================================================================
collection                 items
=========================  ======================================================================================
``pipe-segments``          every current pipe segment (LINESTRING Z, centre line)
``pipe-segments-<cat>``    one per pipe category present (``pipe-segments-js`` = 给水 ...), CJJ 61 codes lower-cased
``pipe-points``            every current pipe point (POINT Z at ground level), ``pipe-points-<cat>`` likewise
``bim-elements``           BIM elements of each model's current version (footprint POLYGON Z at the element base)
``datasets``               one feature per dataset: its extent as a polygon, with catalogue fields
``pointclouds``            datasets of kind pointcloud / raster / mesh (real-scene 3D): always listed, empty until
``rasters`` ``meshes``     such datasets are registered, so clients can bookmark them
``catalogue``              OGC API – Records: dataset and service records (:mod:`cim.features.records`)
=========================  ======================================================================================

Item ids: pipe rows use the store's ``fid`` (stable for unchanged rows across versions); BIM elements use
``<dataset>:<version>:<GlobalId>``; datasets use their id. Time (``datetime``): a pipe row is valid from the
creation of the dataset version that added it until the version that closed it (``version_from``/``version_to``,
``dataset_versions.created_at``); a BIM element from its model version's creation until the next version; a
dataset over ``created_at``..``updated_at``. Without ``datetime`` only current rows are served.

The registry is cached per store and catalogue state (dataset ids, versions, update times), so requests pay for
one small ``datasets`` query, not for scans of the feature tables.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from cim.crs import to_lonlat
from cim.errors import NotFoundError
from cim.pipes.dictionaries import CATEGORIES
from cim.security.policy import Access, dataset_access

PIPE_KINDS = ("pipe_survey", "water_model", "drainage_model")
REALITY_KINDS = {"pointclouds": "pointcloud", "rasters": "raster", "meshes": "mesh"}
CATALOGUE = "catalogue"


@dataclass(frozen=True)
class Queryable:
    """A property of a collection's items: output column, filter expression, JSON type, title.

    ``withheld`` properties (heights, depths) are not served to principals with coarse access.
    """

    name: str
    type: str  # string | number | integer | boolean | date | timestamp | array
    title: str
    column: str | None = None  # SQL for the output value (default: the name)
    expr: str | None = None  # SQL for filtering (default: the column)
    withheld: bool = False
    enum: tuple[str, ...] | None = None

    @property
    def select(self) -> str:
        return self.column or self.name

    @property
    def where(self) -> str:
        return self.expr or self.select

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this queryable (Features Part 3)."""
        types = {"number": {"type": "number"}, "integer": {"type": "integer"}, "boolean": {"type": "boolean"},
                 "date": {"type": "string", "format": "date"}, "timestamp": {"type": "string", "format": "date-time"},
                 "array": {"type": "array", "items": {"type": "string"}}}
        out: dict[str, Any] = {"title": self.title, **types.get(self.type, {"type": "string"})}
        if self.enum:
            out["enum"] = list(self.enum)
        return out


@dataclass(frozen=True)
class Source:
    """Where a collection's items come from: the table, id and geometry SQL and how versions work.

    ``versioning``: ``rows`` (version_from/version_to, NULL = current), ``snapshot`` (a ``version`` column,
    current = the dataset's current version) or ``catalogue`` (the datasets table itself).
    """

    table: str
    id_sql: str
    geom_sql: str
    versioning: str
    dataset_col: str = "dataset_id"
    where: str = "TRUE"
    params: tuple[Any, ...] = ()
    properties: tuple[Queryable, ...] = ()
    integer_ids: bool = False
    base_z: str | None = None  # SQL of a height for 2D geometries (BIM footprints sit at minz)
    count_table: str | None = None  # pipe table whose cached counts give numberMatched
    category: str | None = None
    kinds: tuple[str, ...] | None = None  # datasets collection: only these dataset kinds


@dataclass(frozen=True)
class Collection:
    """One collection: identity, description, source, tilesets and (per request) extent."""

    id: str
    title: str
    description: str
    source: Source | None  # None for the records catalogue
    item_type: str = "feature"
    tilesets: tuple[str, ...] = ()  # tileset.json paths (3D Tiles) of the same content
    keywords: tuple[str, ...] = ()

    @property
    def queryables(self) -> tuple[Queryable, ...]:
        return self.source.properties if self.source else ()

    def queryable(self, name: str) -> Queryable | None:
        """The queryable called ``name`` (exact), if any."""
        return next((q for q in self.queryables if q.name == name), None)


def _q(name: str, type_: str, title: str, **kw: Any) -> Queryable:
    return Queryable(name, type_, title, **kw)


_VERSION_PROPS = (
    _q("version_from", "integer", "首个版本 version that added the row"),
    _q("version_to", "integer", "关闭版本 version that closed the row (null = current)"),
)
_CATS = tuple(CATEGORIES)

SEGMENT_PROPERTIES: tuple[Queryable, ...] = (
    _q("dataset_id", "string", "数据集 dataset"),
    _q("feature_id", "string", "要素编号 feature id"),
    _q("line_id", "string", "管线编号 line id"),
    _q("start_id", "string", "起点点号 start point"),
    _q("end_id", "string", "终点点号 end point"),
    _q("category", "string", "管线大类 category (CJJ 61)", enum=_CATS),
    _q("subtype", "string", "管线小类 sub-type"),
    _q("kind", "string", "gravity | pressure | duct", enum=("gravity", "pressure", "duct")),
    _q("shape", "string", "断面形状 section shape"),
    _q("diameter_mm", "number", "管径 diameter (mm)"),
    _q("width_mm", "number", "宽 width (mm)"),
    _q("height_mm", "number", "高 height (mm)"),
    _q("material", "string", "材质 material"),
    _q("burial", "string", "埋设方式 burial"),
    _q("status", "integer", "状态 status"),
    _q("start_depth", "number", "起点埋深 start depth (m)", withheld=True),
    _q("end_depth", "number", "终点埋深 end depth (m)", withheld=True),
    _q("start_h", "number", "起点高程 start height as recorded (1985, m)", withheld=True),
    _q("end_h", "number", "终点高程 end height as recorded (1985, m)", withheld=True),
    _q("start_z", "number", "起点中心高程 start centre-line height (1985, m)", withheld=True),
    _q("end_z", "number", "终点中心高程 end centre-line height (1985, m)", withheld=True),
    _q("length_3d", "number", "三维长度 3D length (m)"),
    _q("slope", "number", "坡度 slope", withheld=True),
    _q("pressure", "string", "压力 pressure"),
    _q("voltage", "string", "电压 voltage"),
    _q("flow_dir", "string", "流向 flow direction"),
    _q("owner", "string", "权属单位 owner"),
    _q("year", "string", "建设年代 year built"),
    _q("road", "string", "道路名称 road"),
    *_VERSION_PROPS,
)

POINT_PROPERTIES: tuple[Queryable, ...] = (
    _q("dataset_id", "string", "数据集 dataset"),
    _q("feature_id", "string", "要素编号 feature id"),
    _q("point_id", "string", "物探点号 point id"),
    _q("map_no", "string", "图上点号 map number"),
    _q("category", "string", "管线大类 category (CJJ 61)", enum=_CATS),
    _q("subtype", "string", "管线小类 sub-type"),
    _q("feature", "string", "特征 feature"),
    _q("appurtenance", "string", "附属物 appurtenance"),
    _q("code", "string", "要素代码 feature code (CJJ 61 Appendix F)"),
    _q("ground_h", "number", "地面高程 ground height (1985, m)", withheld=True),
    _q("well_depth", "number", "井深 well depth (m)", withheld=True),
    _q("well_bottom_h", "number", "井底高程 well bottom height (1985, m)", withheld=True),
    _q("status", "integer", "状态 status"),
    _q("road", "string", "道路名称 road"),
    _q("survey_date", "date", "探测日期 survey date", expr="TRY_CAST(survey_date AS DATE)"),
    *_VERSION_PROPS,
)

BIM_PROPERTIES: tuple[Queryable, ...] = (
    _q("dataset_id", "string", "数据集 dataset"),
    _q("version", "integer", "模型版本 model version"),
    _q("global_id", "string", "IFC GlobalId"),
    _q("ifc_class", "string", "IFC class"),
    _q("predefined_type", "string", "IFC PredefinedType"),
    _q("name", "string", "名称 name"),
    _q("object_type", "string", "IFC ObjectType"),
    _q("tag", "string", "IFC Tag"),
    _q("storey_name", "string", "楼层 storey"),
    _q("building_global_id", "string", "building GlobalId"),
    _q("materials", "array", "材料 materials"),
    _q("color", "string", "colour #RRGGBBAA"),
    _q("minz", "number", "底高程 base height (1985, m)", withheld=True),
    _q("maxz", "number", "顶高程 top height (1985, m)", withheld=True),
)

DATASET_PROPERTIES: tuple[Queryable, ...] = (
    _q("title", "string", "名称 title"),
    _q("kind", "string", "数据种类 kind"),
    _q("category", "string", "CIM 数据类别 category"),
    _q("grade", "string", "数据分级 data grade (GB/T 43697)", enum=("核心", "重要", "一般")),
    _q("secret", "boolean", "涉密 secret (mapping secrecy)"),
    _q("source_crs", "string", "源坐标系 source CRS"),
    _q("storage_crs", "string", "存储坐标系 storage CRS"),
    _q("vertical_crs", "string", "高程基准 vertical CRS"),
    _q("current_version", "integer", "当前版本 current version"),
    _q("created_at", "timestamp", "创建时间 created"),
    _q("updated_at", "timestamp", "更新时间 updated"),
)


def _segments(category: str | None) -> Source:
    where, params = ("category = ?", (category,)) if category else ("TRUE", ())
    return Source("pipe_segments", "fid", "geom", "rows", where=where, params=params,
                  properties=SEGMENT_PROPERTIES, integer_ids=True, count_table="pipe_segments", category=category)


def _points(category: str | None) -> Source:
    where, params = ("category = ?", (category,)) if category else ("TRUE", ())
    return Source("pipe_points", "fid", "geom", "rows", where=where, params=params,
                  properties=POINT_PROPERTIES, integer_ids=True, count_table="pipe_points", category=category)


BIM_SOURCE = Source("bim_elements", "dataset_id || ':' || version || ':' || global_id", "footprint", "snapshot",
                    properties=BIM_PROPERTIES, base_z="minz")


def _datasets(kinds: tuple[str, ...] | None) -> Source:
    where, params = ("TRUE", ())
    if kinds:
        where, params = f"kind IN ({', '.join('?' for _ in kinds)})", kinds
    return Source("datasets", "id", "CASE WHEN minx IS NULL THEN NULL ELSE ST_MakeEnvelope(minx, miny, maxx, maxy) END",
                  "catalogue", dataset_col="id", where=where, params=params, properties=DATASET_PROPERTIES,
                  kinds=kinds)


@dataclass(frozen=True)
class DatasetState:
    """What the registry keeps of one dataset: catalogue row, CRS84 bounds and version times."""

    row: dict[str, Any]
    bbox: tuple[float, float, float, float] | None
    versions: dict[int, datetime]

    @property
    def id(self) -> str:
        return str(self.row["id"])


@dataclass
class Registry:
    """Collections, datasets and cached row counts for one catalogue state of one store."""

    storage_crs: str
    datasets: dict[str, DatasetState]
    counts: dict[tuple[str, str, str | None], int]  # (table, dataset, category) -> current rows
    dataset_qc: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)  # dataset -> (version, qc JSON)
    views: dict[tuple[Any, ...], dict[str, Collection]] = field(default_factory=dict)

    def count(self, source: Source, dataset_ids: list[str]) -> int | None:
        """Current rows of a pipe source over ``dataset_ids`` from the cache (None when not cached)."""
        if source.count_table is None:
            return None
        return sum(n for (t, d, c), n in self.counts.items()
                   if t == source.count_table and d in dataset_ids and (source.category in (None, c)))

    def categories(self, table: str, dataset_ids: list[str]) -> list[str]:
        """Categories with current rows in ``table`` among ``dataset_ids``, in CJJ 61 order."""
        present = {c for (t, d, c), n in self.counts.items() if t == table and d in dataset_ids and n and c}
        order = list(CATEGORIES)
        return sorted(present, key=lambda c: (order.index(c) if c in order else len(order), c))

    def extent(self, collection: Collection, dataset_ids: list[str]) -> dict[str, Any]:
        """Spatial (CRS84) and temporal extent of a collection over the visible ``dataset_ids``."""
        ids = self.member_datasets(collection, dataset_ids)
        boxes = [self.datasets[d].bbox for d in ids if self.datasets[d].bbox]
        times = [t for d in ids for t in self.datasets[d].versions.values()]
        out: dict[str, Any] = {}
        if boxes:
            arr = np.array(boxes)
            out["spatial"] = {"bbox": [[float(arr[:, 0].min()), float(arr[:, 1].min()),
                                        float(arr[:, 2].max()), float(arr[:, 3].max())]],
                              "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}
        if times:
            out["temporal"] = {"interval": [[min(times).isoformat() + "Z", None]],
                               "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
        return out

    def member_datasets(self, collection: Collection, dataset_ids: list[str]) -> list[str]:
        """The visible datasets that hold rows of ``collection``."""
        src = collection.source
        if src is None:
            return list(dataset_ids)
        if src.count_table:
            return [d for d in dataset_ids
                    if any(t == src.count_table and dd == d and n and src.category in (None, c)
                           for (t, dd, c), n in self.counts.items())]
        if src.table == "bim_elements":
            return [d for d in dataset_ids if self.datasets[d].row.get("kind") == "bim"]
        return [d for d in dataset_ids if not src.kinds or self.datasets[d].row.get("kind") in src.kinds]


def _category_title(code: str, what_zh: str, what_en: str) -> tuple[str, str]:
    cat = CATEGORIES.get(code)
    zh, en = (cat.name_zh, cat.name_en) if cat else (code, code)
    return f"{zh}{what_zh} {en} {what_en}", f"Current {en} ({zh}, CJJ 61 category {code}) {what_en}."


def _collections(reg: Registry, dataset_ids: list[str], pipe_tiles: str, building_tiles: str
                 ) -> dict[str, Collection]:
    out: dict[str, Collection] = {}
    for table, key, what_zh, what_en, make in (
        ("pipe_segments", "pipe-segments", "管线段", "pipe segments", _segments),
        ("pipe_points", "pipe-points", "管线点", "pipe points", _points),
    ):
        out[key] = Collection(
            key, f"地下管线{what_zh} underground {what_en}",
            f"Every current {what_en[:-1]} of every pipe survey; geometry in 3D (1985 heights stored, ellipsoidal "
            "heights in geographic output).", make(None), tilesets=(pipe_tiles,), keywords=("地下管线", "CJJ 61"))
        for cat in reg.categories(table, dataset_ids):
            title, desc = _category_title(cat, what_zh, what_en)
            cid = f"{key}-{cat.lower()}"
            out[cid] = Collection(cid, title, desc, make(cat), tilesets=(pipe_tiles,),
                                  keywords=("地下管线", cat))
    out["bim-elements"] = Collection(
        "bim-elements", "BIM 构件 BIM elements",
        "Elements of each BIM model's current version: footprint polygon at the element's base height, IFC "
        "class, storey, materials.", BIM_SOURCE, tilesets=(building_tiles,), keywords=("BIM", "IFC"))
    out["datasets"] = Collection(
        "datasets", "数据集 datasets", "One feature per dataset: its extent with catalogue fields "
        "(kind, CIM category, data grade, CRSs, versions).", _datasets(None), keywords=("元数据",))
    for cid, kind in REALITY_KINDS.items():
        out[cid] = Collection(
            cid, f"实景三维 real-scene 3D: {kind} datasets",
            f"Catalogue entries of {kind} datasets (extent and metadata); empty until such datasets are registered.",
            _datasets((kind,)), keywords=("实景三维", kind))
    out[CATALOGUE] = Collection(
        CATALOGUE, "目录 catalogue", "OGC API – Records catalogue of datasets and services with CJJ/T 315 metadata "
        "(identification, extent, quality, time, CRS, distribution, data grade).", None, item_type="record",
        keywords=("元数据", "CJJ/T 315"))
    return out


# -- building and caching -------------------------------------------------------------------------------------
_CACHE: OrderedDict[tuple[Any, ...], Registry] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 16


def _signature(rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple((r["id"], r["current_version"], str(r["updated_at"])) for r in rows)


def _store_key(store: Any) -> Any:
    """What identifies the underlying database (a scoped view shares its store's cache entry)."""
    for obj in (store, getattr(store, "base", None), getattr(store, "store", None)):
        path = getattr(obj, "path", None)
        if path and path != ":memory:":
            return path
    inner = getattr(store, "base", None) or getattr(store, "store", None)
    return id(inner if inner is not None else store)


def _build(store: Any, rows: list[dict[str, Any]], storage_crs: str) -> Registry:
    cur = store.read()
    try:
        versions: dict[str, dict[int, datetime]] = {}
        qc: dict[str, list[tuple[int, Any]]] = {}
        for d, v, t, q in cur.execute(
            "SELECT dataset_id, version, created_at, qc FROM dataset_versions ORDER BY dataset_id, version"
        ).fetchall():
            versions.setdefault(d, {})[int(v)] = t
            qc.setdefault(d, []).append((int(v), q))
        counts: dict[tuple[str, str, str | None], int] = {}
        for table in ("pipe_segments", "pipe_points"):
            for d, c, n in cur.execute(
                f"SELECT dataset_id, category, count(*) FROM {table} WHERE version_to IS NULL GROUP BY ALL"
            ).fetchall():
                counts[(table, d, c)] = int(n)
    finally:
        cur.close()
    states: dict[str, DatasetState] = {}
    for r in rows:
        bbox = None
        if r.get("minx") is not None:
            xs = np.array([r["minx"], r["maxx"], r["minx"], r["maxx"]], dtype="f8")
            ys = np.array([r["miny"], r["miny"], r["maxy"], r["maxy"]], dtype="f8")
            lon, lat = to_lonlat(xs, ys, r.get("storage_crs") or storage_crs)
            bbox = (float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max()))
        states[r["id"]] = DatasetState(r, bbox, versions.get(r["id"], {}))
    return Registry(storage_crs, states, counts, qc)


def registry(store: Any, storage_crs: str, *, pipe_tiles: str = "/tiles/pipes/tileset.json",
             building_tiles: str = "/tiles/buildings/tileset.json") -> tuple[Registry, View]:
    """The registry of ``store`` (cached per catalogue state) and the caller's view of it.

    ``store`` is a :class:`~cim.store.DuckDBStore` or anything with its read API (``datasets()``, ``read()``);
    a store carrying a ``principal`` (the security ``ScopedStore``) limits the view to the datasets that
    principal may read, coarsening those it may read only coarsely.
    """
    rows = store.datasets()
    key = (_store_key(store), storage_crs, _signature(rows))
    with _CACHE_LOCK:
        reg = _CACHE.get(key)
        if reg is not None:
            _CACHE.move_to_end(key)
    if reg is None:
        reg = _build(store, rows, storage_crs)
        with _CACHE_LOCK:
            _CACHE[key] = reg
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    view = View.of(reg, store, pipe_tiles, building_tiles)
    return reg, view


@dataclass(frozen=True)
class View:
    """One caller's view of a registry: visible datasets, coarse ones, the collections they make."""

    registry: Registry
    visible: tuple[str, ...]
    coarse: frozenset[str]
    collections: dict[str, Collection]

    @classmethod
    def of(cls, reg: Registry, store: Any, pipe_tiles: str, building_tiles: str) -> View:
        principal = getattr(store, "principal", None)
        visible: list[str] = []
        coarse: set[str] = set()
        for d, state in reg.datasets.items():
            access = Access.FULL if principal is None else dataset_access(
                principal, state.row.get("grade"), bool(state.row.get("secret")))
            if access is Access.NONE:
                continue
            visible.append(d)
            if access is Access.COARSE:
                coarse.add(d)
        ckey = (tuple(visible), pipe_tiles, building_tiles)
        cols = reg.views.get(ckey)
        if cols is None:
            cols = reg.views[ckey] = _collections(reg, visible, pipe_tiles, building_tiles)
        return cls(reg, tuple(visible), frozenset(coarse), cols)

    def get(self, collection_id: str) -> Collection:
        """The collection ``collection_id``; raises NotFoundError naming the known ones."""
        if collection_id not in self.collections:
            raise NotFoundError(f"collection {collection_id!r} does not exist "
                                f"(known: {', '.join(self.collections)})")
        return self.collections[collection_id]

    def extent(self, collection: Collection) -> dict[str, Any]:
        """The collection's extent over the visible datasets."""
        return self.registry.extent(collection, list(self.visible))
