"""A synthetic survey district in Jinan (历下区), delivered like a CJJ 61-2017 pipe survey.

Example::

    from converters.samples.district import generate_district
    summary = generate_district(Path("out"), blocks_x=4, blocks_y=3, dirty=True)

or ``python -m converters.samples.district OUT_DIR --blocks-x 4 --blocks-y 3 [--dirty] [--layout single]``.

The district is a grid of 150 m blocks whose south-west street crossing lies at E 502 000, N 4 058 000
(EPSG:4548: CGCS2000 3-degree Gauss–Krüger, CM 117°E, no zone prefix); heights are 1985 national
heights (EPSG:5737). The ground falls 1.5 % northwards from about 75 m at the southern edge; a district
longer than 2 km falls 30 m in all (at least 0.5 %, like Jinan's slope from the southern hills to the
Yellow River), starting higher where needed.

Every street carries water, storm, sewer, gas, heat, power and telecom, each 3 m from the next across
the street and in its own depth band (depth to the top of the section): telecom 0.5 m, power 1.1 m,
gas 1.7 m, water 2.1 m, heat 2.7 m. Storm and sewer laterals pass under them and drop into trunk
manholes; storm trunk crowns lie ≥ 3.55 m deep, sewer crowns ≥ 3.75 m (below the storm laterals). One
E–W street adds an oxygen line at 3.2 m, one N–S street a utility tunnel at 4.0 m. Every crossing of two
networks thus keeps the vertical clearance of GB 50289-2016 Table 4.1.14 (duct banks and trenches
counted as protected) with about 0.04 m to spare.

Conventions written into the files: X = northing, Y = easting; gravity lines record invert (管内底)
elevations, pressure lines pipe-top elevations, duct banks and the tunnel the top of the section;
``地面高程 − 埋深 = 高程`` holds exactly at every line end; gravity lines point downstream.

All arithmetic runs on integer millimetres with numpy, and text is built with pyarrow compute, so a
district of a million segments is written in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from cim.qc.catalogue import RULES

# ----------------------------------------------------------------------------- layout (millimetres)
BLOCK = 150_000
ORIGIN_E = 502_000_000
ORIGIN_N = 4_058_000_000
CATCHMENT_BLOCKS = 8  # gravity trunks discharge at least every 8 blocks (1.2 km)
PRESSURE_STEPS = 3  # segments per block edge: 50 m
GRAVITY_STEPS = 4  # manholes every 37.5 m
EXTEND = 18_000  # oxygen line and tunnel run past the outer streets
OUTFALL_LEAD = 20_000

# gravity depth bands (depth below ground, mm); see the module docstring
YS_TRUNK_TOP = 3_550  # storm trunk crown
WS_TRUNK_TOP = 3_750  # sewer trunk crown, below the storm laterals
LATERAL_DEEP = 3_550  # invert where a lateral meets a trunk after crossing the other networks
LATERAL_SHALLOW = 2_800  # invert where a lateral meets a trunk from the street corner side
LATERAL_HEAD = 1_800  # invert at the mid-block head manhole
LATERAL_DROP = 132  # 0.0035 over 37.5 m
INLET_DEPTH = 1_500
INLET_OFFSET = 2_500
INLET_DROP = 25  # DN200 lead at slope 0.01
YS_LADDER = (300, 400, 500, 600, 800, 1000, 1200)
WS_LADDER = (300, 400, 500, 600, 800)

# node and segment tags
JUNCTION, NS_MID, EW_MID, EXTRA = 0, 1, 2, 3
NS, EW, LEAD, OUTFALL, SOURCE, RUN = 0, 1, 2, 3, 4, 5

FEATURES = ("直线点", "弯头", "三通", "四通", "预留口", "出水口", "水源")
STRAIGHT, BEND, TEE, CROSS, STUB, OUTLET, WATER_SOURCE = range(7)
APPURTENANCES = ("检修井", "雨水箅", "消防栓", "阀门", "阀门井", "排放口", "工作井", "人孔", "手孔")
MANHOLE, INLET, HYDRANT, VALVE, VALVE_WELL, DISCHARGE, CABLE_WELL, TEL_MANHOLE, HANDHOLE = range(9)
CHAMBERS = (MANHOLE, VALVE_WELL, CABLE_WELL, TEL_MANHOLE, HANDHOLE)
#: Appendix F sequence digits (last two of the 8-digit code); WS manholes use 05 (污水井 52022205).
FEATURE_SEQ = np.array([1, 2, 3, 4, 5, 6, 7])
APPURTENANCE_SEQ = np.array([2, 4, 2, 4, 4, 6, 2, 2, 3])

NS_ROADS = ("历山路", "千佛山路", "山大路", "燕子山路", "二环东路", "舜耕路", "历黄路", "洪山路")
EW_ROADS = ("经十路", "文化东路", "和平路", "解放路", "花园路", "工业南路", "轻骑路", "华信路")
SURVEY_UNIT = "历下区地下管线普查项目组"
YEARS = (1996, 2002, 2006, 2009, 2012, 2015, 2018, 2021)

LAYOUTS = ("per_category", "single")
SINGLE_FILES = ("pipe_points.csv", "pipe_lines.csv")


@dataclass(frozen=True)
class _Spec:
    """One network: file prefix, CJJ 61 digits, offset from the centre line and depth band."""

    key: str
    prefix: str
    digit: int
    sub: int
    offset: int  # mm east of N–S centre lines, north of E–W centre lines
    top: int  # depth to the top of the section (pressure, duct); 0 for gravity
    height: int  # section height (mm) used for chamber depths


SPECS: dict[str, _Spec] = {
    "JS": _Spec("JS", "JS", 1, 4, -13_500, 2_100, 400),
    "YS": _Spec("YS", "YS", 2, 1, 13_500, 0, 0),
    "WS": _Spec("WS", "WS", 2, 2, 10_500, 0, 0),
    "RQ": _Spec("RQ", "RQ", 3, 3, -7_500, 1_700, 200),
    "RL": _Spec("RL", "RL", 4, 1, 7_500, 2_700, 300),
    "DL": _Spec("DL", "GD", 5, 1, 4_500, 1_100, 400),
    "TX": _Spec("TX", "TX", 6, 1, -10_500, 500, 300),
    "GY": _Spec("GY", "GY", 7, 2, -4_500, 3_200, 150),
    "QT": _Spec("QT", "QT", 8, 1, 0, 4_000, 2_800),
}
ORDER = tuple(SPECS)
ID_PREFIX = {("TX", 1): "DH", ("TX", 3): "XX", ("GY", 2): "YQ", ("QT", 1): "ZH"}
CATEGORY_LABEL = {("TX", 1): "DH", ("TX", 3): "XX"}


@dataclass(frozen=True)
class _Style:
    """How a contractor delivers one network: header language, encoding, constant attributes."""

    header: str  # "cn" | "en"
    encoding: str
    burial: str
    protect: str
    owner: dict[int, str]  # by sub-type
    constants: dict[str, dict[int, str]] = field(default_factory=dict)  # line field -> by sub-type
    point_names: dict[str, str] = field(default_factory=dict)
    line_names: dict[str, str] = field(default_factory=dict)
    cover: bool = False


STYLES: dict[str, _Style] = {
    "JS": _Style("cn", "utf-8-sig", "直埋", "无", {4: "济南水务集团"}, {"pressure": {4: "0.3MPa"}},
                 {"x": "X坐标", "y": "Y坐标", "code": "要素代码"},
                 {"start_id": "起始点号", "end_id": "终止点号", "code": "要素代码"}),
    "YS": _Style("cn", "gbk", "ZM", "无", {1: "济南城市建设集团"},
                 line_names={"start_h": "起点管底高程", "end_h": "终点管底高程"}, cover=True),
    "WS": _Style("cn", "gbk", "直埋", "无", {2: "济南水务集团"},
                 line_names={"start_id": "起点号", "end_id": "终点号"}, cover=True),
    "RQ": _Style("en", "utf-8", "ZM", "无", {3: "济南港华燃气"}, {"pressure": {3: "中压"}}),
    "RL": _Style("cn", "utf-8", "直埋", "无", {1: "济南热力集团"}, {"pressure": {1: "1.6MPa"}},
                 line_names={"owner": "管理单位"}),
    "DL": _Style("cn", "utf-8", "管块", "混凝土包封", {1: "国网济南供电公司"},
                 {"voltage": {1: "10kV"}, "cable_count": {1: "4"}, "hole_count": {1: "12"}},
                 line_names={"size": "断面尺寸"}),
    "TX": _Style("cn", "utf-8", "GK", "混凝土包封", {1: "中国电信济南分公司", 3: "中国联通济南分公司"},
                 {"hole_count": {1: "6", 3: "9"}}, line_names={"year": "埋设年代"}),
    "GY": _Style("cn", "utf-8", "直埋", "无", {2: "济南医用气体供应站"}, {"pressure": {2: "0.8MPa"}}),
    "QT": _Style("cn", "utf-8", "ZH", "无", {1: "济南城市建设集团"}, line_names={"size": "断面尺寸"}),
}

POINT_COLUMNS = ("point_id", "map_no", "category", "feature", "appurtenance", "code", "x", "y", "ground_h",
                 "well_depth", "cover_size", "road", "survey_unit", "survey_date", "remark")
LINE_COLUMNS = ("start_id", "end_id", "category", "code", "start_depth", "end_depth", "start_h", "end_h",
                "size", "material", "burial", "pressure", "voltage", "cable_count", "hole_count", "protect",
                "owner", "year", "road", "status", "survey_unit", "survey_date", "remark")
CN_NAMES = {
    "point_id": "物探点号", "map_no": "图上点号", "category": "管线类别", "feature": "特征", "appurtenance": "附属物",
    "code": "点编码", "x": "X", "y": "Y", "ground_h": "地面高程", "well_depth": "井深", "cover_size": "井盖规格",
    "road": "道路名称", "survey_unit": "探测单位", "survey_date": "探测日期", "remark": "备注",
    "start_id": "起点点号", "end_id": "终点点号", "start_depth": "起点埋深", "end_depth": "终点埋深",
    "start_h": "起点高程", "end_h": "终点高程", "size": "管径", "material": "材质", "burial": "埋设方式",
    "pressure": "压力", "voltage": "电压", "cable_count": "电缆条数", "hole_count": "总孔数", "protect": "保护材料",
    "owner": "权属单位", "year": "建设年代", "status": "状态",
}
CN_LINE_CODE = "线编码"
EN_NAMES = {
    "point_id": "EXP_NO", "map_no": "MAP_NO", "category": "TYPE", "feature": "FEATURE", "appurtenance": "SUBSID",
    "code": "CODE", "x": "X", "y": "Y", "ground_h": "SURF_H", "well_depth": "WELL_DEEP", "cover_size": "COVER_SIZE",
    "road": "ROAD", "survey_unit": "DET_UNIT", "survey_date": "DET_DATE", "remark": "REMARK",
    "start_id": "S_POINT", "end_id": "E_POINT", "start_depth": "S_DEEP", "end_depth": "E_DEEP", "start_h": "S_H",
    "end_h": "E_H", "size": "D_S", "material": "MATERIAL", "burial": "EMBED", "pressure": "PRESSURE",
    "voltage": "VOLTAGE", "cable_count": "CAB_COUNT", "hole_count": "HOLE_COUNT", "protect": "PROTECT",
    "owner": "OWNER", "year": "BUR_YEAR", "status": "STATUS",
}


@dataclass(frozen=True)
class DistrictSummary:
    """What :func:`generate_district` wrote.

    ``points``/``lines`` count rows per network (JS, YS, WS, RQ, RL, DL, TX, GY, QT); ``bbox`` is
    (min easting, min northing, max easting, max northing) in EPSG:4548 metres; ``defects`` maps rule
    ids to the injected rows (``file``, ``row`` with the header as row 1, ``feature_id``), empty when clean.
    """

    out_dir: Path
    files: tuple[str, ...]
    points: dict[str, int]
    lines: dict[str, int]
    bbox: tuple[float, float, float, float]
    blocks: tuple[int, int]
    seed: int
    layout: str
    dirty: bool
    defects: dict[str, list[dict[str, object]]]
    crs: str = "EPSG:4548"
    vertical_crs: str = "EPSG:5737"

    @property
    def total_points(self) -> int:
        """All point rows written."""
        return sum(self.points.values())

    @property
    def total_lines(self) -> int:
        """All line rows written."""
        return sum(self.lines.values())


# ----------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class _Grid:
    """Street grid and ground surface."""

    bx: int
    by: int
    phases: tuple[float, float, float]

    @property
    def slope(self) -> float:
        """1.5 % up to 2 km north–south, then a 30 m fall spread out, but never under 0.5 %."""
        extent_m = self.by * BLOCK / 1000
        return 0.015 if extent_m <= 2000 else max(30.0 / extent_m, 0.005)

    @property
    def south_h(self) -> float:
        """Ground at the southern edge: 75 m, higher where a long district must still end near 45 m."""
        return max(75.0, 45.0 + self.slope * self.by * BLOCK / 1000)

    def x(self, i: np.ndarray | int) -> np.ndarray:
        return ORIGIN_E + np.asarray(i, dtype=np.int64) * BLOCK

    def y(self, j: np.ndarray | int) -> np.ndarray:
        return ORIGIN_N + np.asarray(j, dtype=np.int64) * BLOCK

    def ground(self, e: np.ndarray, n: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ground height (mm) at easting/northing (mm): the tilted plane, two gentle waves, mm noise."""
        de = (np.asarray(e, dtype=np.float64) - ORIGIN_E) / 1000.0
        dn = (np.asarray(n, dtype=np.float64) - ORIGIN_N) / 1000.0
        p1, p2, p3 = self.phases
        h = self.south_h - self.slope * dn
        h += 0.15 * np.sin(2 * np.pi * de / 900 + p1) * np.cos(2 * np.pi * dn / 1300 + p2)
        h += 0.05 * np.sin(2 * np.pi * (de + dn) / 700 + p3)
        h += rng.uniform(-0.004, 0.004, size=de.shape)
        return np.rint(h * 1000).astype(np.int64)


_POINT_DEFAULTS = {"tag": EXTRA, "k": 0, "gi": 0, "gj": 0, "road": 0, "feat": -1, "app": -1, "sub": -1,
                   "well": -1, "ground": 0}
_LINE_DEFAULTS = {"tag": LEAD, "k": 0, "gi": 0, "gj": 0, "road": 0, "sd": 0, "ed": 0, "sh": 0, "eh": 0,
                  "size": 0, "mat": 0, "sub": -1}


class _Net:
    """One network as integer arrays: points (``p``) and segments (``l``), plus label lists."""

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.p: dict[str, np.ndarray] = {}
        self.l: dict[str, np.ndarray] = {}
        self.sizes: list[str] = []
        self.mats: list[str] = []

    @property
    def n_points(self) -> int:
        return len(self.p["e"]) if self.p else 0

    @property
    def n_lines(self) -> int:
        return len(self.l["a"]) if self.l else 0

    def _append(self, store: dict[str, np.ndarray], defaults: dict[str, int], count: int,
                cols: dict[str, object]) -> None:
        for name, default in defaults.items():
            value = cols.get(name, self.spec.sub if name == "sub" and default == -1 else default)
            cols[name] = value
        for name, value in cols.items():
            arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (count,))
            store[name] = np.concatenate([store[name], arr]) if name in store else arr.copy()

    def add_points(self, e: np.ndarray, n: np.ndarray, **cols: object) -> np.ndarray:
        """Append points; returns their indices."""
        start, count = self.n_points, len(e)
        self._append(self.p, _POINT_DEFAULTS, count, {"e": e, "n": n, **cols})
        return np.arange(start, start + count)

    def add_lines(self, a: np.ndarray, b: np.ndarray, **cols: object) -> np.ndarray:
        """Append segments from point ``a`` to point ``b``; returns their indices."""
        start, count = self.n_lines, len(a)
        self._append(self.l, _LINE_DEFAULTS, count, {"a": a, "b": b, **cols})
        return np.arange(start, start + count)

    def keep_lines(self, mask: np.ndarray) -> None:
        self.l = {name: arr[mask] for name, arr in self.l.items()}

    def elevate(self) -> None:
        """Pressure/duct convention: constant depth to the top of the section at every line end."""
        top = self.spec.top
        g = self.p["ground"]
        self.l["sd"] = np.full(self.n_lines, top, dtype=np.int64)
        self.l["ed"] = self.l["sd"].copy()
        self.l["sh"] = g[self.l["a"]] - top
        self.l["eh"] = g[self.l["b"]] - top


def _grid_net(spec: _Spec, grid: _Grid, steps: int) -> _Net:
    """Junctions, mid-block points and segments of one network on every street of the grid."""
    bx, by, m, off = grid.bx, grid.by, steps, spec.offset
    net = _Net(spec)
    step = BLOCK // m
    jj, ji = np.divmod(np.arange((bx + 1) * (by + 1)), bx + 1)
    net.add_points(grid.x(ji) + off, grid.y(jj) + off, tag=JUNCTION, gi=ji, gj=jj, road=ji)
    i, j, k = (a.ravel() for a in np.indices((bx + 1, by, m - 1)))
    net.add_points(grid.x(i) + off, grid.y(j) + off + (k + 1) * step, tag=NS_MID, k=k + 1, gi=i, gj=j, road=i)
    j, i, k = (a.ravel() for a in np.indices((by + 1, bx, m - 1)))
    net.add_points(grid.x(i) + off + (k + 1) * step, grid.y(j) + off, tag=EW_MID, k=k + 1, gi=i, gj=j,
                   road=bx + 1 + j)
    ns0 = (bx + 1) * (by + 1)
    ew0 = ns0 + (bx + 1) * by * (m - 1)

    def jn(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return j * (bx + 1) + i

    i, j, k = (a.ravel() for a in np.indices((bx + 1, by, m)))
    base = ns0 + (i * by + j) * (m - 1)
    a = np.where(k == 0, jn(i, j), base + k - 1)
    b = np.where(k == m - 1, jn(i, j + 1), base + k)
    net.add_lines(a, b, tag=NS, k=k, gi=i, gj=j, road=i)
    j, i, k = (a.ravel() for a in np.indices((by + 1, bx, m)))
    base = ew0 + (j * bx + i) * (m - 1)
    a = np.where(k == 0, jn(i, j), base + k - 1)
    b = np.where(k == m - 1, jn(i + 1, j), base + k)
    net.add_lines(a, b, tag=EW, k=k, gi=i, gj=j, road=bx + 1 + j)
    return net


def _mask(arrs: dict[str, np.ndarray], **where: int) -> np.ndarray:
    out = np.ones(len(next(iter(arrs.values()))), dtype=bool)
    for name, value in where.items():
        out &= arrs[name] == value
    return out


# ----------------------------------------------------------------------------- pressure and duct networks
def _js_extras(net: _Net, grid: _Grid) -> None:
    """Water: DN300 mains, DN400 on 经十路, valves, hydrants on short leads, a source at the edge."""
    net.sizes, net.mats = ["DN300", "DN400", "DN150"], ["球墨铸铁"]
    p, ln = net.p, net.l
    odd = (p["gi"] + p["gj"]) % 2
    p["app"][_mask(p, tag=NS_MID, k=1) & (odd == 0)] = VALVE
    p["app"][_mask(p, tag=EW_MID, k=2) & (odd == 1)] = VALVE
    branch = np.flatnonzero(_mask(p, tag=NS_MID, k=2) | _mask(p, tag=EW_MID, k=1))
    p["app"][branch] = VALVE_WELL
    p["app"][_mask(p, tag=JUNCTION, gj=0)] = VALVE_WELL
    ln["size"][_mask(ln, tag=EW, gj=0)] = 1
    ns = p["tag"][branch] == NS_MID
    meta = {"gi": p["gi"][branch], "gj": p["gj"][branch], "road": p["road"][branch]}
    hyd = net.add_points(p["e"][branch] - np.where(ns, 2_000, 0), p["n"][branch] - np.where(ns, 0, 2_000),
                         app=HYDRANT, **meta)
    net.add_lines(branch, hyd, tag=LEAD, size=2, **meta)
    road = grid.bx + 1
    src = net.add_points(net.p["e"][[0]] - 20_000, net.p["n"][[0]], feat=WATER_SOURCE, road=road)
    net.add_lines(src, np.array([0]), tag=SOURCE, size=1, road=road)


def _rq_extras(net: _Net, grid: _Grid) -> None:
    """Gas: DN200, steel on N–S streets, PE on E–W streets, a valve every other block."""
    net.sizes, net.mats = ["DN200"], ["G", "PE"]
    net.l["mat"][net.l["tag"] == EW] = 1
    p = net.p
    net.p["app"][_mask(p, tag=NS_MID, k=1) & (p["gi"] % 2 == 0) & (p["gj"] % 2 == 0)] = VALVE


def _rl_extras(net: _Net, grid: _Grid) -> None:
    """Heat: DN300 steel hot-water main, valves on E–W streets."""
    net.sizes, net.mats = ["DN300"], ["钢"]
    net.p["app"][_mask(net.p, tag=EW_MID, k=2) & (net.p["gi"] % 2 == 0)] = VALVE


def _dl_extras(net: _Net, grid: _Grid) -> None:
    """Power: 10 kV duct bank 600×400 with a cable well on every N–S block edge."""
    net.sizes, net.mats = ["600×400"], ["铜"]
    net.p["app"][_mask(net.p, tag=NS_MID, k=1)] = CABLE_WELL


def _tx_extras(net: _Net, grid: _Grid) -> None:
    """Telecom: 电话 DH on N–S streets, 信息网络 XX on E–W streets, manholes at crossings."""
    net.sizes, net.mats = ["400X300"], ["铜", "光纤"]
    p, ln = net.p, net.l
    p["sub"][p["tag"] == EW_MID] = 3
    ln["sub"][ln["tag"] == EW] = 3
    ln["mat"][ln["tag"] == EW] = 1
    p["app"][p["tag"] == JUNCTION] = TEL_MANHOLE
    p["app"][_mask(p, tag=EW_MID, k=1)] = HANDHOLE


_EXTRAS: dict[str, Callable[[_Net, _Grid], None]] = {
    "JS": _js_extras, "RQ": _rq_extras, "RL": _rl_extras, "DL": _dl_extras, "TX": _tx_extras,
}
_JUNCTION_FEATURE = np.array([STUB, STUB, BEND, TEE, CROSS])
_MID_FEATURE = np.array([STUB, STUB, STRAIGHT, TEE, CROSS])


def _assign_features(net: _Net) -> None:
    """特征 from valence for points that carry no appurtenance."""
    p, ln = net.p, net.l
    deg = np.bincount(ln["a"], minlength=net.n_points) + np.bincount(ln["b"], minlength=net.n_points)
    d = np.clip(deg, 0, 4)
    feat = np.where(p["tag"] == JUNCTION, _JUNCTION_FEATURE[d], _MID_FEATURE[d])
    free = (p["feat"] < 0) & (p["app"] < 0)
    p["feat"] = np.where(free, feat, p["feat"])


def _chamber_depths(net: _Net) -> None:
    chamber = np.isin(net.p["app"], CHAMBERS)
    net.p["well"] = np.where(chamber, net.spec.top + net.spec.height + 500, -1)


def _pressure_net(key: str, grid: _Grid, rng: np.random.Generator) -> _Net:
    net = _grid_net(SPECS[key], grid, PRESSURE_STEPS)
    _EXTRAS[key](net, grid)
    net.p["ground"] = grid.ground(net.p["e"], net.p["n"], rng)
    _assign_features(net)
    _chamber_depths(net)
    net.elevate()
    return net


def _linear_net(key: str, grid: _Grid, rng: np.random.Generator) -> _Net:
    """A single line across the district: oxygen (GY) on 文化东路, the utility tunnel (QT) on 山大路."""
    spec = SPECS[key]
    net = _Net(spec)
    along_ew = key == "GY"
    count = grid.bx if along_ew else grid.by
    t = np.concatenate([[-EXTEND], 25_000 + 50_000 * np.arange(3 * count), [count * BLOCK + EXTEND]])
    if along_ew:
        j = min(1, grid.by)
        e, n, road = ORIGIN_E + t, np.full(len(t), grid.y(j) + spec.offset), grid.bx + 1 + j
    else:
        i = grid.bx // 2
        e, n, road = np.full(len(t), grid.x(i) + spec.offset), ORIGIN_N + t, i
    feat = np.full(len(t), STRAIGHT)
    feat[[0, -1]] = STUB
    app = np.full(len(t), -1)
    if along_ew:
        valves = np.arange(4, len(t) - 1, 4)
        feat[valves], app[valves] = -1, VALVE
    idx = net.add_points(e, n, feat=feat, app=app, road=road, k=np.arange(len(t)))
    net.add_lines(idx[:-1], idx[1:], tag=RUN, road=road, k=np.arange(len(t) - 1))
    net.sizes, net.mats = (["DN150"], ["钢"]) if along_ew else (["3000*2800"], ["混凝土"])
    net.p["ground"] = grid.ground(net.p["e"], net.p["n"], rng)
    net.elevate()
    return net


# ----------------------------------------------------------------------------- gravity networks
def _min_drop(diameter: int, length: int) -> int:
    """Smallest invert drop (mm) over ``length`` mm: slope ≥ 0.9/D and ≥ 0.003 up to DN300, +10 %."""
    slope = max(0.9 / diameter, 0.003 if diameter <= 300 else 0.0)
    return math.ceil(1.1 * slope * length)


def _trunk_inverts(gs: np.ndarray, ge: np.ndarray, diam: np.ndarray, present: np.ndarray,
                   first: np.ndarray, crown: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Start/end inverts along every N–S trunk (rows = streets, columns = segments downstream)."""
    st = np.zeros(gs.shape, dtype=np.int64)
    en = np.zeros(gs.shape, dtype=np.int64)
    prev = None
    for q in range(gs.shape[1]):
        if not present[q]:
            prev = None
            continue
        need = crown + int(diam[q])
        start = gs[:, q] - need
        if not first[q] and prev is not None:
            start = np.minimum(prev - max(0, int(diam[q] - diam[q - 1])), start)
        prev = np.minimum(start - _min_drop(int(diam[q]), length), ge[:, q] - need)
        st[:, q], en[:, q] = start, prev
    return st, en


def _trunk_plan(by: int, ladder: tuple[int, ...], step: int) -> tuple[np.ndarray, ...]:
    """Per N–S segment position: present, first of its catchment, diameter, last of its catchment."""
    q = np.arange(by * GRAVITY_STEPS)
    j, k = np.divmod(q, GRAVITY_STEPS)
    present = ~((k == 0) & (j % CATCHMENT_BLOCKS == 0) & (j > 0))
    first = present & np.r_[True, ~present[:-1]]
    run_start = np.maximum.accumulate(np.where(first, q, 0))
    diam = np.asarray(ladder)[np.minimum((q - run_start) // step, len(ladder) - 1)]
    last = present & np.r_[~present[1:], True]
    return present, first, diam, last


def _gravity_net(key: str, grid: _Grid, rng: np.random.Generator) -> _Net:
    """Storm (YS) or sewer (WS): manholes at every node, trunks flowing north to outfalls."""
    spec = SPECS[key]
    storm = key == "YS"
    ladder, crown = (YS_LADDER, YS_TRUNK_TOP) if storm else (WS_LADDER, WS_TRUNK_TOP)
    net = _grid_net(spec, grid, GRAVITY_STEPS)
    net.sizes = [f"DN{d}" if storm else str(d) for d in ladder] + ["DN200"]
    net.mats = ["混凝土"] if storm else ["T"]
    p, ln = net.p, net.l
    p["app"][:] = MANHOLE
    flip = (ln["tag"] == EW) & (ln["k"] < 2)  # west half of a block drains west
    ln["a"], ln["b"] = np.where(flip, ln["b"], ln["a"]), np.where(flip, ln["a"], ln["b"])
    present, first, diam, last = _trunk_plan(grid.by, ladder, 2)  # one size up every 75 m
    shape = (grid.bx + 1, grid.by * GRAVITY_STEPS)
    n_ns = shape[0] * shape[1]
    ends = ln["b"][:n_ns].reshape(shape)[:, last].ravel()
    out = net.add_points(p["e"][ends], p["n"][ends] + OUTFALL_LEAD, feat=OUTLET if storm else -1,
                         app=-1 if storm else DISCHARGE, gi=p["gi"][ends], gj=p["gj"][ends], road=p["road"][ends])
    inlets = _add_inlets(net) if storm else None
    p = net.p
    p["ground"] = grid.ground(p["e"], p["n"], rng)
    g = p["ground"]
    a, b = ln["a"][:n_ns].reshape(shape), ln["b"][:n_ns].reshape(shape)
    st, en = _trunk_inverts(g[a], g[b], diam, present, first, crown, BLOCK // GRAVITY_STEPS)
    ln["sh"][:n_ns], ln["eh"][:n_ns] = st.ravel(), en.ravel()
    ln["size"][:n_ns] = np.tile(np.searchsorted(ladder, diam), shape[0])
    _lateral_inverts(net, n_ns, (grid.by + 1) * grid.bx * GRAVITY_STEPS)
    last_diam = np.tile(diam[last], shape[0])
    start_inv = en[:, last].ravel()
    drops = np.array([_min_drop(int(d), OUTFALL_LEAD) for d in last_diam], dtype=np.int64)
    end_inv = np.minimum(start_inv - drops, g[out] - crown - last_diam)  # keep the crown band, as trunks do
    net.add_lines(ends, out, tag=OUTFALL, size=np.searchsorted(ladder, last_diam), sh=start_inv,
                  eh=end_inv, gi=p["gi"][ends], gj=p["gj"][ends], road=p["road"][ends])
    if inlets is not None:
        top = g[inlets[0]] - INLET_DEPTH
        net.add_lines(inlets[0], inlets[1], size=len(ladder), sh=top, eh=top - INLET_DROP,
                      gi=p["gi"][inlets[1]], gj=p["gj"][inlets[1]], road=p["road"][inlets[1]])
    keep = np.ones(net.n_lines, dtype=bool)
    keep[:n_ns] = np.tile(present, shape[0])
    net.keep_lines(keep)
    ln = net.l
    ln["sd"], ln["ed"] = g[ln["a"]] - ln["sh"], g[ln["b"]] - ln["eh"]
    _manhole_depths(net)
    return net


def _add_inlets(net: _Net) -> tuple[np.ndarray, np.ndarray]:
    """Gully inlets (雨水箅) 2.5 m beyond the storm line at the first and third manhole of each edge."""
    p = net.p
    mids = np.flatnonzero(((p["tag"] == NS_MID) | (p["tag"] == EW_MID)) & ((p["k"] == 1) | (p["k"] == 3)))
    ns = p["tag"][mids] == NS_MID
    inl = net.add_points(p["e"][mids] + np.where(ns, INLET_OFFSET, 0), p["n"][mids] + np.where(ns, 0, INLET_OFFSET),
                         app=INLET, gi=p["gi"][mids], gj=p["gj"][mids], road=p["road"][mids])
    return inl, mids


def _lateral_inverts(net: _Net, n_ns: int, n_ew: int) -> None:
    """E–W laterals drain from the mid-block head manhole to both neighbouring N–S trunks."""
    ln, g = net.l, net.p["ground"]
    sl = slice(n_ns, n_ns + n_ew)
    a, b = ln["a"][sl].reshape(-1, GRAVITY_STEPS), ln["b"][sl].reshape(-1, GRAVITY_STEPS)
    west_j = g[b[:, 0]] - LATERAL_SHALLOW
    east_j = g[b[:, 3]] - LATERAL_DEEP
    head = g[a[:, 1]] - LATERAL_HEAD
    ln["sh"][sl] = np.stack([west_j + LATERAL_DROP, head, head, east_j + LATERAL_DROP], axis=1).ravel()
    ln["eh"][sl] = np.stack([west_j, west_j + LATERAL_DROP, east_j + LATERAL_DROP, east_j], axis=1).ravel()


def _manhole_depths(net: _Net) -> None:
    """井深: deepest pipe end at the well plus a 0.3 m sump; gully inlets 0.2 m below their lead."""
    p, ln = net.p, net.l
    deepest = np.zeros(net.n_points, dtype=np.int64)
    np.maximum.at(deepest, ln["a"], ln["sd"])
    np.maximum.at(deepest, ln["b"], ln["ed"])
    well = np.where(p["app"] == MANHOLE, deepest + 300, -1)
    p["well"] = np.where(p["app"] == INLET, INLET_DEPTH + 200, well)


def _build_nets(bx: int, by: int, seed: int) -> tuple[_Grid, dict[str, _Net]]:
    rng = np.random.default_rng(seed)
    grid = _Grid(bx, by, tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 3)))  # type: ignore[arg-type]
    nets: dict[str, _Net] = {}
    for n, key in enumerate(ORDER):
        sub_rng = np.random.default_rng([seed, n])
        if key in ("YS", "WS"):
            nets[key] = _gravity_net(key, grid, sub_rng)
        elif key in ("GY", "QT"):
            nets[key] = _linear_net(key, grid, sub_rng)
        else:
            nets[key] = _pressure_net(key, grid, sub_rng)
    return grid, nets


# ----------------------------------------------------------------------------- text
def _fmt_mm(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """Millimetres as metres with exactly three decimals ('67.045', '-0.300')."""
    v = np.asarray(values, dtype=np.int64)
    mag = np.abs(v)
    whole = pc.cast(pa.array(mag // 1000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(mag % 1000), pa.string()), width=3, padding="0")
    text = pc.binary_join_element_wise(whole, frac, ".")
    if (v < 0).any():
        text = pc.if_else(pa.array(v < 0), pc.binary_join_element_wise(pa.scalar("-"), text, ""), text)
    if null is not None and null.any():
        text = pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text)
    return text


def _take(labels: list[str] | tuple[str, ...], idx: np.ndarray) -> pa.Array:
    idx = np.asarray(idx, dtype=np.int64)
    return pc.take(pa.array(list(labels), pa.string()), pa.array(idx, mask=idx < 0))


def _const(value: str | None, count: int) -> pa.Array:
    return pa.nulls(count, pa.string()) if value is None else pa.repeat(pa.scalar(value, pa.string()), count)


def _by_sub(subs: np.ndarray, table: dict[int, str]) -> pa.Array:
    keys = sorted(table)
    idx = np.searchsorted(keys, subs)
    return _take([table[k] for k in keys], idx)


def _point_ids(net: _Net) -> pa.Array:
    """物探点号: sub-type prefix plus a running number per prefix (JS1, YS12, DH3 ...)."""
    subs = net.p["sub"]
    numbers = np.zeros(net.n_points, dtype=np.int64)
    prefixes = np.zeros(net.n_points, dtype=np.int64)
    labels = []
    for n, sub in enumerate(np.unique(subs)):
        mask = subs == sub
        numbers[mask] = np.arange(1, mask.sum() + 1)
        prefixes[mask] = n
        labels.append(ID_PREFIX.get((net.spec.key, int(sub)), net.spec.prefix))
    return pc.binary_join_element_wise(_take(labels, prefixes), pc.cast(pa.array(numbers), pa.string()), "")


def _category(net: _Net, subs: np.ndarray) -> pa.Array:
    table = {int(s): CATEGORY_LABEL.get((net.spec.key, int(s)), net.spec.prefix) for s in np.unique(subs)}
    return _by_sub(subs, table)


def _point_codes(net: _Net) -> pa.Array:
    """Appendix F: 5, category digit, sub-type, element 2, point type 1/2, sequence."""
    p = net.p
    is_app = p["app"] >= 0
    seq = np.where(is_app, APPURTENANCE_SEQ[np.maximum(p["app"], 0)], FEATURE_SEQ[np.maximum(p["feat"], 0)])
    if net.spec.key == "WS":
        seq = np.where(p["app"] == MANHOLE, 5, seq)
    code = 50_000_000 + net.spec.digit * 1_000_000 + p["sub"] * 10_000 + 2_000 + np.where(is_app, 200, 100) + seq
    return pc.cast(pa.array(code), pa.string())


def _point_table(net: _Net, roads: list[str], dates: list[str]) -> dict[str, pa.Array]:
    p, count = net.p, net.n_points
    ids = _point_ids(net)
    cols = {
        "point_id": ids, "map_no": ids, "category": _category(net, p["sub"]),
        "feature": _take(FEATURES, p["feat"]), "appurtenance": _take(APPURTENANCES, p["app"]),
        "code": _point_codes(net), "x": _fmt_mm(p["n"]), "y": _fmt_mm(p["e"]), "ground_h": _fmt_mm(p["ground"]),
        "well_depth": _fmt_mm(p["well"], p["well"] < 0), "road": _take(roads, p["road"]),
        "survey_unit": _const(SURVEY_UNIT, count), "survey_date": _take(dates, p["road"]),
        "remark": _const(None, count),
    }
    if STYLES[net.spec.key].cover:
        cover = np.where(p["app"] == MANHOLE, 0, np.where(p["app"] == INLET, 1, -1))
        cols["cover_size"] = _take(["700", "750×450"], cover)
    return cols


def _line_table(net: _Net, ids: pa.Array, roads: list[str], dates: list[str],
                years: np.ndarray) -> dict[str, pa.Array]:
    ln, count, style = net.l, net.n_lines, STYLES[net.spec.key]
    code = 50_000_000 + net.spec.digit * 1_000_000 + ln["sub"] * 10_000 + 1_000
    cols = {
        "start_id": pc.take(ids, pa.array(ln["a"])), "end_id": pc.take(ids, pa.array(ln["b"])),
        "category": _category(net, ln["sub"]), "code": pc.cast(pa.array(code), pa.string()),
        "start_depth": _fmt_mm(ln["sd"]), "end_depth": _fmt_mm(ln["ed"]),
        "start_h": _fmt_mm(ln["sh"]), "end_h": _fmt_mm(ln["eh"]),
        "size": _take(net.sizes, ln["size"]), "material": _take(net.mats, ln["mat"]),
        "burial": _const(style.burial, count),
    }
    for name, table in style.constants.items():
        cols[name] = _by_sub(ln["sub"], table)
    cols |= {
        "protect": _const(style.protect, count), "owner": _by_sub(ln["sub"], style.owner),
        "year": pc.cast(pa.array(years[ln["road"]]), pa.string()), "road": _take(roads, ln["road"]),
        "status": _const("0", count), "survey_unit": _const(SURVEY_UNIT, count),
        "survey_date": _take(dates, ln["road"]), "remark": _const(None, count),
    }
    return cols


def _road_names(bx: int, by: int) -> list[str]:
    ns = [NS_ROADS[i] if i < len(NS_ROADS) else f"纬{i + 1}路" for i in range(bx + 1)]
    ew = [EW_ROADS[j] if j < len(EW_ROADS) else f"经{j + 3}路" for j in range(by + 1)]
    return ns + ew


# ----------------------------------------------------------------------------- tables and defects
class _Table:
    """Output rows of one table: columns by canonical name; editable row by row for dirty data."""

    def __init__(self, cols: dict[str, pa.Array], order: tuple[str, ...]) -> None:
        self.cols: dict[str, pa.Array | list[str | None]] = {c: cols[c] for c in order if c in cols}
        self.rows = len(next(iter(self.cols.values())))
        self.keys: list[int] | None = None
        self.dup_remark = False

    def editable(self) -> None:
        if self.keys is None:
            self.cols = {c: v.to_pylist() if isinstance(v, pa.Array) else v for c, v in self.cols.items()}
            self.keys = list(range(self.rows))

    def pos(self, key: int) -> int:
        self.editable()
        assert self.keys is not None
        return self.keys.index(key)

    def get(self, key: int, col: str) -> str | None:
        pos = self.pos(key)
        return self.cols[col][pos]  # type: ignore[index]

    def set(self, key: int, col: str, value: str | None) -> None:
        pos = self.pos(key)
        self.cols[col][pos] = value  # type: ignore[index]

    def append(self, key: int, **changes: str | None) -> int:
        """Copy row ``key`` to the end with ``changes``; returns the new row's key."""
        pos = self.pos(key)
        assert self.keys is not None
        new = max(self.keys) + 1
        for col, values in self.cols.items():
            values.append(changes.get(col, values[pos]))  # type: ignore[union-attr]
        self.keys.append(new)
        self.rows += 1
        return new

    def delete(self, key: int) -> None:
        pos = self.pos(key)
        assert self.keys is not None
        for values in self.cols.values():
            del values[pos]  # type: ignore[union-attr]
        del self.keys[pos]
        self.rows -= 1

    def arrays(self) -> dict[str, pa.Array]:
        return {c: v if isinstance(v, pa.Array) else pa.array(v, pa.string()) for c, v in self.cols.items()}


def _m(text: str | None) -> int:
    return round(float(text) * 1000)  # type: ignore[arg-type]


def _t(mm: int) -> str:
    return str(_fmt_mm(np.array([mm]))[0])


class _Dirty:
    """Injects one defect (or two) per QC rule into the clean tables and logs where."""

    def __init__(self, grid: _Grid, nets: dict[str, _Net], tables: dict[tuple[str, str], _Table]) -> None:
        self.grid, self.nets, self.tables = grid, nets, tables
        self.log: list[tuple[str, str, str, int | None]] = []
        self.rng = np.random.default_rng(7)
        self.next_id = {key: net.n_points + 1 for key, net in nets.items()}

    def pt(self, key: str) -> _Table:
        return self.tables[(key, "point")]

    def ln(self, key: str) -> _Table:
        return self.tables[(key, "line")]

    def record(self, rule: str, key: str, kind: str, row: int | None) -> None:
        self.log.append((rule, key, kind, row))

    def line(self, key: str, **where: int) -> int:
        return int(np.flatnonzero(_mask(self.nets[key].l, **where))[0])

    def point(self, key: str, **where: int) -> int:
        return int(np.flatnonzero(_mask(self.nets[key].p, **where))[0])

    def new_id(self, key: str, prefix: str) -> str:
        self.next_id[key] += 1
        return f"{prefix}{self.next_id[key]}"

    def ground(self, e: int, n: int) -> int:
        return int(self.grid.ground(np.array([e]), np.array([n]), self.rng)[0])

    def set_end(self, key: str, row: int, end: str, depth: int, ground: int | None = None) -> None:
        """Set depth at one line end and keep 地面高程 − 埋深 = 高程 (ground from the point unless given)."""
        net = self.nets[key]
        g = int(net.p["ground"][net.l["a" if end == "start" else "b"][row]]) if ground is None else ground
        self.ln(key).set(row, f"{end}_depth", _t(depth))
        self.ln(key).set(row, f"{end}_h", _t(g - depth))

    def hydrant(self, n: int) -> tuple[int, int, int]:
        """The n-th hydrant lead of the water network: (line, branch point, hydrant point)."""
        row = int(np.flatnonzero(self.nets["JS"].l["tag"] == LEAD)[n])
        return row, int(self.nets["JS"].l["a"][row]), int(self.nets["JS"].l["b"][row])


def _inject_tables(d: _Dirty) -> None:
    """Table-level defects: header, not-null, numeric, point ids, codes, dictionary values, CRS."""
    d.ln("RL").dup_remark = True
    d.record("header", "RL", "line", None)
    row = d.line("JS", tag=NS, gi=0, gj=0, k=1)
    d.ln("JS").set(row, "material", None)
    d.record("not_null", "JS", "line", row)
    row = d.point("JS", tag=EW_MID, gi=0, gj=2, k=2)
    d.pt("JS").set(row, "ground_h", None)
    d.record("not_null", "JS", "point", row)
    row = d.line("DL", tag=NS, gi=1, gj=0, k=2)
    d.ln("DL").set(row, "start_depth", f"{d.ln('DL').get(row, 'start_depth')}米")
    d.record("numeric", "DL", "line", row)
    row = d.line("DL", tag=EW, gi=1, gj=1, k=1)
    d.ln("DL").set(row, "end_depth", "abc")
    d.record("numeric", "DL", "line", row)
    row = d.point("WS", tag=EW_MID, gi=1, gj=2, k=1)
    d.pt("WS").set(row, "map_no", f"{d.pt('WS').get(row, 'point_id')}A")
    d.record("map_no_mismatch", "WS", "point", row)
    row = d.point("RQ", tag=JUNCTION, gi=1, gj=1)
    d.record("duplicate_point_id", "RQ", "point", d.pt("RQ").append(row, remark="重复采集"))
    row = d.point("RL", tag=NS_MID, gi=1, gj=1, k=1)
    d.pt("RL").set(row, "appurtenance", "阀门")
    d.record("feature_xor_appurtenance", "RL", "point", row)
    row = d.point("YS", tag=NS_MID, gi=1, gj=1, k=2)
    code = d.pt("YS").get(row, "code") or ""
    d.pt("YS").set(row, "code", code[:2] + "02" + code[4:])
    d.record("code_consistency", "YS", "point", row)
    row = d.line("RL", tag=EW, gi=2, gj=2, k=0)
    d.ln("RL").set(row, "material", "塑料钢")
    d.ln("RL").set(row, "burial", "XX")
    d.record("dictionary_value", "RL", "line", row)
    _, _, hyd = d.hydrant(3)
    table = d.pt("JS")
    x, y = table.get(hyd, "x"), table.get(hyd, "y")
    table.set(hyd, "x", y)
    table.set(hyd, "y", x)
    d.record("crs_region", "JS", "point", hyd)


def _inject_topology(d: _Dirty) -> None:
    """Defects of the point–line graph."""
    row = d.line("WS", tag=NS, gi=2, gj=1, k=1)
    d.ln("WS").set(row, "end_id", None)
    d.record("missing_end_id", "WS", "line", row)
    _, branch, _ = d.hydrant(4)
    pid = d.pt("JS").get(branch, "point_id")
    depth = _t(SPECS["JS"].top)
    h = _t(int(d.nets["JS"].p["ground"][branch]) - SPECS["JS"].top)
    new = d.ln("JS").append(d.line("JS", tag=NS, gi=1, gj=1, k=1), start_id=pid, end_id=pid, start_depth=depth,
                            end_depth=depth, start_h=h, end_h=h)
    d.record("zero_length", "JS", "line", new)
    lead, _, _ = d.hydrant(0)
    t = d.ln("JS")
    swap = {"start_id": t.get(lead, "end_id"), "end_id": t.get(lead, "start_id"),
            "start_h": t.get(lead, "end_h"), "end_h": t.get(lead, "start_h")}
    d.record("duplicate_segment", "JS", "line", t.append(lead, **swap))
    row = d.line("YS", tag=NS, gi=3, gj=1, k=1)
    d.ln("YS").set(row, "end_id", "YS99999")
    d.record("dangling_reference", "YS", "line", row)
    _add_orphan(d)
    _add_duplicate_coordinates(d)
    row = d.point("DL", tag=NS_MID, gi=2, gj=1, k=2)
    code = d.pt("DL").get(row, "code") or ""
    d.pt("DL").set(row, "feature", "三通")
    d.pt("DL").set(row, "code", code[:-2] + "03")
    d.record("valence", "DL", "point", row)


def _add_orphan(d: _Dirty) -> None:
    net = d.nets["RQ"]
    row = d.line("RQ", tag=NS, gi=2, gj=1, k=1)
    a, b = net.l["a"][row], net.l["b"][row]
    e, n = int((net.p["e"][a] + net.p["e"][b]) // 2), int((net.p["n"][a] + net.p["n"][b]) // 2)
    anchor = d.point("RQ", tag=NS_MID, gi=2, gj=1, k=1)
    pid = d.new_id("RQ", "RQ")
    code = (d.pt("RQ").get(anchor, "code") or "")[:-4] + "2101"
    new = d.pt("RQ").append(anchor, point_id=pid, map_no=pid, feature="直线点", appurtenance=None, code=code,
                            x=_t(n), y=_t(e), ground_h=_t(d.ground(e, n)), well_depth=None)
    d.record("orphan_point", "RQ", "point", new)


def _add_duplicate_coordinates(d: _Dirty) -> None:
    """A second gully inlet surveyed at the very same spot, with its own lead into the same manhole."""
    net = d.nets["YS"]
    lead = int(np.flatnonzero((net.l["tag"] == LEAD) & (net.p["tag"][net.l["b"]] == EW_MID)
                              & (net.l["gi"] == 2) & (net.l["gj"] == 1))[0])
    inlet = int(net.l["a"][lead])
    pid = d.new_id("YS", "YS")
    new_point = d.pt("YS").append(inlet, point_id=pid, map_no=pid)
    d.ln("YS").append(lead, start_id=pid)
    d.record("duplicate_coordinates", "YS", "point", new_point)


def _inject_elevations(d: _Dirty) -> None:
    """Defects of heights and depths."""
    row = d.line("WS", tag=EW, gi=0, gj=1, k=2)
    d.ln("WS").set(row, "start_h", _t(_m(d.ln("WS").get(row, "start_h")) + 200))
    d.record("elevation_identity", "WS", "line", row)
    row = d.line("JS", tag=NS, gi=1, gj=0, k=1)  # starts at a 直线点: 0.3 m deeper there than its neighbour
    d.set_end("JS", row, "start", SPECS["JS"].top + 300)
    d.record("shared_point_consistency", "JS", "point", int(d.nets["JS"].l["a"][row]))
    lead, _, _ = d.hydrant(1)
    d.set_end("JS", lead, "start", 200)
    d.set_end("JS", lead, "end", 200)
    d.record("depth_range", "JS", "line", lead)
    lead, _, _ = d.hydrant(2)
    d.set_end("JS", lead, "end", 1_200)
    d.record("steep_segment", "JS", "line", lead)
    net = d.nets["YS"]
    row = d.line("YS", tag=NS, gi=0, gj=1, k=1)
    end_h = _m(d.ln("YS").get(row, "start_h")) + 300
    d.set_end("YS", row, "end", int(net.p["ground"][net.l["b"][row]]) - end_h)
    d.record("reversed_slope", "YS", "line", row)
    net = d.nets["WS"]
    row = d.line("WS", tag=EW, gi=2, gj=2, k=1)
    end_h = _m(d.ln("WS").get(row, "start_h")) - round(0.0005 * BLOCK / GRAVITY_STEPS)
    d.set_end("WS", row, "end", int(net.p["ground"][net.l["b"][row]]) - end_h)
    d.record("under_slope", "WS", "line", row)
    _diameter_decrease(d)
    row = d.point("WS", tag=NS_MID, gi=0, gj=2, k=2)
    ln = net.l
    depths = np.concatenate([ln["sd"][ln["a"] == row], ln["ed"][ln["b"] == row]])
    d.pt("WS").set(row, "well_depth", _t(int(depths.max()) - 500))
    d.record("invert_above_ground", "WS", "point", row)


def _diameter_decrease(d: _Dirty) -> None:
    """A DN600 storm trunk flowing into a DN400 (the next segment downstream on 山大路)."""
    ln = d.nets["YS"].l
    sizes = d.nets["YS"].sizes
    rows = np.flatnonzero((ln["tag"] == NS) & (ln["gi"] == 2))
    for up, down in zip(rows[:-1], rows[1:], strict=True):
        if sizes[ln["size"][up]] == "DN600" and ln["b"][up] == ln["a"][down] and ln["size"][down] >= ln["size"][up]:
            slope = (ln["sh"][down] - ln["eh"][down]) / (BLOCK / GRAVITY_STEPS)
            if slope >= 0.0025:
                d.ln("YS").set(int(down), "size", "DN400")
                d.record("diameter_decrease", "YS", "line", int(down))
                return
    raise ValueError("no DN600 storm trunk to shrink downstream; use at least 2×2 blocks")


def _inject_geometry(d: _Dirty) -> None:
    """Defects of plan geometry: a long telecom run, a crossing without node, a tight crossing."""
    _long_segment(d)
    _crossing_without_junction(d)
    _tight_crossing(d)


def _long_segment(d: _Dirty) -> None:
    """Drop a telecom point and move the next one 20 m on: a 120 m segment."""
    net, lines, points = d.nets["TX"], d.ln("TX"), d.pt("TX")
    first = d.line("TX", tag=NS, gi=1, gj=1, k=0)
    second = d.line("TX", tag=NS, gi=1, gj=1, k=1)
    third = d.line("TX", tag=NS, gi=1, gj=1, k=2)
    drop, move = int(net.l["b"][first]), int(net.l["b"][second])
    e, n = int(net.p["e"][move]), int(net.p["n"][move]) + 20_000
    g = d.ground(e, n)
    points.set(move, "x", _t(n))
    points.set(move, "ground_h", _t(g))
    lines.set(first, "end_id", points.get(move, "point_id"))
    d.set_end("TX", first, "end", SPECS["TX"].top, ground=g)
    d.set_end("TX", third, "start", SPECS["TX"].top, ground=g)
    lines.delete(second)
    points.delete(drop)
    d.record("long_segment", "TX", "line", first)


def _two_point_line(d: _Dirty, key: str, template: int, ends: list[tuple[int, int]], top_h: int,
                    size: str, road: str | None) -> int:
    """Append two new 预留口 points and the line between them at (top) elevation ``top_h``."""
    ids = []
    prefix = SPECS[key].prefix
    anchor = d.point(key, tag=NS_MID, gi=0, gj=0, k=1)
    code = (d.pt(key).get(anchor, "code") or "")[:-4] + "2105"
    for e, n in ends:
        g = d.ground(e, n)
        pid = d.new_id(key, prefix)
        ids.append((pid, g))
        d.pt(key).append(anchor, point_id=pid, map_no=pid, feature="预留口", appurtenance=None, code=code,
                         x=_t(n), y=_t(e), ground_h=_t(g), well_depth=None, road=road)
    (sa, ga), (sb, gb) = ids
    return d.ln(key).append(template, start_id=sa, end_id=sb, start_depth=_t(ga - top_h), end_depth=_t(gb - top_h),
                            start_h=_t(top_h), end_h=_t(top_h), size=size, road=road)


def _crossing_without_junction(d: _Dirty) -> None:
    """A DN150 water pipe crossing a water main at the same level, mid-block, with no shared node."""
    grid, net = d.grid, d.nets["JS"]
    row = d.line("JS", tag=NS, gi=3, gj=1, k=1)
    e_main = int(grid.x(3)) + SPECS["JS"].offset
    n = int((net.p["n"][net.l["a"][row]] + net.p["n"][net.l["b"][row]]) // 2)
    top = int(np.mean(net.p["ground"][[net.l["a"][row], net.l["b"][row]]])) - SPECS["JS"].top
    road = d.ln("JS").get(row, "road")
    new = _two_point_line(d, "JS", row, [(e_main - 2_500, n), (e_main + 1_500, n)], top, "DN150", road)
    d.record("crossing_without_junction", "JS", "line", new)


def _tight_crossing(d: _Dirty) -> None:
    """A DN200 gas pipe passing 0.05 m above a storm lateral (GB 50289 asks for 0.15 m)."""
    ys = d.nets["YS"]
    row = d.line("YS", tag=EW, gi=1, gj=1, k=1)  # head -> first manhole, flowing west
    a, b = ys.l["a"][row], ys.l["b"][row]
    e = int(d.grid.x(1)) + SPECS["YS"].offset + 60_000
    t = (ys.p["e"][a] - e) / (ys.p["e"][a] - ys.p["e"][b])
    crown = ys.l["sh"][row] + t * (ys.l["eh"][row] - ys.l["sh"][row]) + 300
    top = int(math.ceil(crown)) + 50 + 200
    n0 = int(ys.p["n"][a])
    template = d.line("RQ", tag=EW, gi=1, gj=1, k=1)
    new = _two_point_line(d, "RQ", template, [(e, n0 - 1_200), (e, n0 + 1_800)], top, "DN200",
                          d.ln("YS").get(row, "road"))
    d.record("clearance", "RQ", "line", new)


def _inject_defects(grid: _Grid, nets: dict[str, _Net], tables: dict[tuple[str, str], _Table]) -> _Dirty:
    if grid.bx < 3 or grid.by < 2:
        raise ValueError("dirty districts need at least 3×2 blocks")
    d = _Dirty(grid, nets, tables)
    _inject_geometry(d)  # rows are addressed by key, so deletions do not shift later targets
    _inject_tables(d)
    _inject_topology(d)
    _inject_elevations(d)
    return d


# ----------------------------------------------------------------------------- writing
def _header(names: list[str], style: _Style | None, kind: str) -> list[str]:
    base = EN_NAMES if style is not None and style.header == "en" else CN_NAMES
    custom = {} if style is None else (style.point_names if kind == "point" else style.line_names)
    out = []
    for name in names:
        if name in custom:
            out.append(custom[name])
        elif name == "code" and kind == "line" and base is CN_NAMES:
            out.append(CN_LINE_CODE)
        else:
            out.append(base[name])
    return out


def _write_csv(path: Path, header: list[str], columns: list[pa.Array], encoding: str) -> None:
    table = pa.Table.from_arrays(columns, names=[f"c{n}" for n in range(len(columns))])
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    body = sink.getvalue().to_pybytes()
    head = ",".join(header) + "\n"
    with path.open("wb") as fh:
        if encoding in ("utf-8", "utf-8-sig"):
            fh.write(head.encode(encoding) + body)
        else:
            fh.write((head + body.decode("utf-8")).encode(encoding))


def _file_name(key: str, kind: str) -> str:
    return f"{SPECS[key].prefix}{'POINT' if kind == 'point' else 'LINE'}.csv"


def _columns(table: _Table, with_category: bool) -> tuple[list[str], list[pa.Array]]:
    arrays = table.arrays()
    names = [c for c in arrays if with_category or c != "category"]
    cols = [arrays[c] for c in names]
    if table.dup_remark:
        names.append("remark")
        cols.append(pa.nulls(table.rows, pa.string()))
    return names, cols


def _write_per_category(out_dir: Path, tables: dict[tuple[str, str], _Table]) -> dict[tuple[str, str], tuple[str, int]]:
    """One point and one line file per network; returns (file, row offset) per table."""
    where = {}
    for (key, kind), table in tables.items():
        style = STYLES[key]
        names, cols = _columns(table, with_category=key == "TX")
        name = _file_name(key, kind)
        _write_csv(out_dir / name, _header(names, style, kind), cols, style.encoding)
        where[(key, kind)] = (name, 0)
    return where


def _write_single(out_dir: Path, tables: dict[tuple[str, str], _Table]) -> dict[tuple[str, str], tuple[str, int]]:
    """All networks in one point file and one line file with a 管线类别 column (UTF-8, Chinese)."""
    where = {}
    for kind, name, order in (("point", SINGLE_FILES[0], POINT_COLUMNS), ("line", SINGLE_FILES[1], LINE_COLUMNS)):
        parts = [tables[(key, kind)] for key in ORDER]
        present = [c for c in order if any(c in t.cols for t in parts)]
        cols, offset = [], 0
        for key, table in zip(ORDER, parts, strict=True):
            where[(key, kind)] = (name, offset)
            offset += table.rows
        for c in present:
            chunks = [t.arrays().get(c, pa.nulls(t.rows, pa.string())) for t in parts]
            cols.append(pa.concat_arrays(chunks))
        names = list(present)
        if any(t.dup_remark for t in parts):
            names.append("remark")
            cols.append(pa.nulls(offset, pa.string()))
        _write_csv(out_dir / name, _header(names, None, kind), cols, "utf-8")
    return where


def _defect_report(d: _Dirty, where: dict[tuple[str, str], tuple[str, int]]) -> dict[str, list[dict[str, object]]]:
    report: dict[str, list[dict[str, object]]] = {}
    for rule, key, kind, row_key in d.log:
        name, offset = where[(key, kind)]
        entry: dict[str, object] = {"file": name, "row": 1, "feature_id": None}
        if row_key is not None:
            table = d.tables[(key, kind)]
            entry["row"] = offset + table.pos(row_key) + 2
            if kind == "point":
                entry["feature_id"] = table.get(row_key, "point_id")
            else:
                entry["feature_id"] = f"{table.get(row_key, 'start_id') or ''}-{table.get(row_key, 'end_id') or ''}"
        report.setdefault(rule, []).append(entry)
    order = {r.id: r.number for r in RULES}
    return dict(sorted(report.items(), key=lambda item: order.get(item[0], 99)))


def _tables(grid: _Grid, nets: dict[str, _Net], seed: int) -> dict[tuple[str, str], _Table]:
    roads = _road_names(grid.bx, grid.by)
    rng = np.random.default_rng([seed, 99])
    dates = [str(np.datetime64("2025-03-03") + int(v)) for v in rng.integers(0, 75, len(roads))]
    tables: dict[tuple[str, str], _Table] = {}
    for key in ORDER:
        net = nets[key]
        points = _point_table(net, roads, dates)
        years = np.asarray(YEARS)[rng.integers(0, len(YEARS), len(roads))]
        lines = _line_table(net, points["point_id"], roads, dates, years)
        tables[(key, "point")] = _Table(points, POINT_COLUMNS)
        tables[(key, "line")] = _Table(lines, LINE_COLUMNS)
    return tables


def _bbox(nets: dict[str, _Net]) -> tuple[float, float, float, float]:
    e = np.concatenate([n.p["e"] for n in nets.values()])
    n = np.concatenate([n.p["n"] for n in nets.values()])
    return (float(e.min()) / 1000, float(n.min()) / 1000, float(e.max()) / 1000, float(n.max()) / 1000)


# ----------------------------------------------------------------------------- public API
def count_district(blocks_x: int, blocks_y: int) -> tuple[int, int]:
    """(points, segments) that :func:`generate_district` writes for a clean grid of this size."""
    bx, by = blocks_x, blocks_y
    edges = (bx + 1) * by + (by + 1) * bx
    junctions = (bx + 1) * (by + 1)
    catchments = -(-by // CATCHMENT_BLOCKS)
    segments = 26 * edges + 5 * bx + 3 * by + 5
    points = (5 * junctions + 10 * edges) + (edges + 1) + 2 * (junctions + 3 * edges + (bx + 1) * catchments)
    points += 2 * edges + (3 * bx + 2) + (3 * by + 2)
    return points, segments


def blocks_for_segments(target_segments: int) -> tuple[int, int]:
    """Blocks (x, y) of a near-square district with about ``target_segments`` segments (≈ 52 per block)."""
    if target_segments < 1:
        raise ValueError("target_segments must be positive")
    side = max(1, round(math.sqrt(target_segments / 52)))
    candidates = [(bx, by) for bx in range(max(1, side - 2), side + 3) for by in range(max(1, side - 2), side + 3)]
    return min(candidates, key=lambda c: (abs(count_district(*c)[1] - target_segments), abs(c[0] - c[1])))


def generate_district(out_dir: Path, *, blocks_x: int = 4, blocks_y: int = 3, seed: int = 2025,
                      dirty: bool = False, layout: str = "per_category") -> DistrictSummary:
    """Write the district's pipe tables to ``out_dir``; with ``dirty`` also ``defects.json``.

    ``layout="per_category"`` writes one point and one line table per network, named and encoded as
    contractors deliver them (``JSPOINT.csv`` UTF-8 with BOM, ``YSPOINT.csv``/``WSPOINT.csv`` GBK, gas with
    English column codes, the rest Chinese UTF-8); ``layout="single"`` writes ``pipe_points.csv`` and
    ``pipe_lines.csv`` (UTF-8) for all networks with a 管线类别 column. A dirty district needs at least
    3×2 blocks.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if blocks_x < 1 or blocks_y < 1:
        raise ValueError("a district needs at least one block each way")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid, nets = _build_nets(blocks_x, blocks_y, seed)
    tables = _tables(grid, nets, seed)
    d = _inject_defects(grid, nets, tables) if dirty else None
    writer = _write_single if layout == "single" else _write_per_category
    where = writer(out_dir, tables)
    files = sorted({name for name, _ in where.values()})
    defects: dict[str, list[dict[str, object]]] = {}
    defects_path = out_dir / "defects.json"
    if d is not None:
        defects = _defect_report(d, where)
        defects_path.write_text(json.dumps(defects, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        files.append(defects_path.name)
    elif defects_path.exists():
        defects_path.unlink()
    return DistrictSummary(
        out_dir=out_dir, files=tuple(files),
        points={key: tables[(key, "point")].rows for key in ORDER},
        lines={key: tables[(key, "line")].rows for key in ORDER},
        bbox=_bbox(nets), blocks=(blocks_x, blocks_y), seed=seed, layout=layout, dirty=dirty, defects=defects,
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m converters.samples.district OUT_DIR [options]``."""
    parser = argparse.ArgumentParser(description="Write a synthetic Jinan pipe-survey district (EPSG:4548).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--blocks-x", type=int, default=4)
    parser.add_argument("--blocks-y", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--dirty", action="store_true", help="inject one defect per QC rule, list them in defects.json")
    parser.add_argument("--layout", choices=LAYOUTS, default="per_category")
    args = parser.parse_args(argv)
    summary = generate_district(args.out_dir, blocks_x=args.blocks_x, blocks_y=args.blocks_y, seed=args.seed,
                                dirty=args.dirty, layout=args.layout)
    print(f"{summary.total_points} points, {summary.total_lines} segments in {', '.join(summary.files)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
