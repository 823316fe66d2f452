"""CJJ 61-2017 dictionaries: pipe categories (App. B), materials, burial, status (App. C), point types.

Every dictionary comes with an alias table so delivered values (codes in any case, Chinese names,
legacy names, layer names such as ``YSLINE`` or ``给水管线点``) resolve to the standard codes. The
same tables are exported by :func:`dictionary_rows` for vectorised joins in DuckDB; Python lookups
and SQL joins agree as long as both sides compare :func:`norm` keys (SQL: :data:`NORM_SQL`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

RGB = tuple[int, int, int]
V = TypeVar("V")
K = TypeVar("K", str, int)

GRAVITY = "gravity"  # depth/elevation measured to the invert (管内底)
PRESSURE = "pressure"  # measured to the pipe top (管顶)
DUCT = "duct"  # measured to the top of the duct bank / trench

FEATURE = "feature"  # 特征点 (Appendix F point-type digit 1)
APPURTENANCE = "appurtenance"  # 附属物 (digit 2)

# ---------------------------------------------------------------------------------------------
# alias normalisation, shared with SQL

#: Characters DuckDB's ``trim()`` removes (Unicode space separators); ``norm`` strips the same.
_SQL_TRIM = " \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000"

#: SQL equivalent of :func:`norm`; format with the column expression: ``NORM_SQL.format(x="t.col")``.
NORM_SQL = "lower(trim(replace({x}, ' ', '')))"


def norm(text: str) -> str:
    """Alias key: ASCII spaces removed, Unicode space separators trimmed, lower-cased.

    Equal to DuckDB's ``lower(trim(replace(x, ' ', '')))`` (:data:`NORM_SQL`), so alias tables from
    :func:`dictionary_rows` join on the same keys Python resolvers use. Tabs/newlines are kept,
    as in SQL.
    """
    return text.replace(" ", "").strip(_SQL_TRIM).lower()


def norm_sql(expr: str) -> str:
    """The SQL expression normalising ``expr`` exactly like :func:`norm`."""
    return NORM_SQL.format(x=expr)


def _build_index(entries: list[tuple[str, V]], suffixes: tuple[str, ...]) -> dict[str, V]:
    """Alias index over ``entries`` (alias, value), each alias also with every suffix appended.

    Listed aliases must not clash (ValueError); a derived (suffixed) key never overrides a listed
    alias, and derived keys claimed by two values are dropped as ambiguous.
    """
    index: dict[str, V] = {}
    for alias, value in entries:
        key = norm(alias)
        if index.get(key, value) != value:
            raise ValueError(f"alias {key!r} maps to both {index[key]!r} and {value!r}")
        index[key] = value
    derived: dict[str, V] = {}
    ambiguous: set[str] = set()
    for alias, value in entries:
        for suffix in suffixes:
            key = norm(alias + suffix)
            if key in index:
                continue
            if derived.setdefault(key, value) != value:
                ambiguous.add(key)
    index.update((k, v) for k, v in derived.items() if k not in ambiguous)
    return index


# ---------------------------------------------------------------------------------------------
# Appendix B: categories and sub-types


@dataclass(frozen=True)
class Category:
    """A major pipe category (大类): code, Appendix F digit, names, display colour, depth convention."""

    code: str
    digit: int
    name_zh: str
    name_en: str
    colour: RGB
    kind: str


@dataclass(frozen=True)
class Subtype:
    """A pipe sub-type (小类): code, its major, 2-digit Appendix F code, names, depth convention, colour."""

    code: str
    major: str
    digits: str
    name_zh: str
    name_en: str
    kind: str
    colour: RGB


#: QT has no colour of its own in Appendix B (only its sub-types); BM purple is used for plain QT.
CATEGORIES: dict[str, Category] = {
    c.code: c
    for c in (
        Category("JS", 1, "给水", "water supply", (0, 255, 255), PRESSURE),
        Category("PS", 2, "排水", "drainage", (76, 57, 38), GRAVITY),
        Category("RQ", 3, "燃气", "gas", (255, 0, 255), PRESSURE),
        Category("RL", 4, "热力", "heating", (255, 128, 0), PRESSURE),
        Category("DL", 5, "电力", "power", (255, 0, 0), DUCT),
        Category("TX", 6, "通信", "telecom", (0, 255, 0), DUCT),
        Category("GY", 7, "工业", "industrial", (0, 0, 0), PRESSURE),
        Category("QT", 8, "其他", "other", (102, 0, 204), PRESSURE),
    )
}

CATEGORY_BY_DIGIT: dict[int, Category] = {c.digit: c for c in CATEGORIES.values()}

_SUBTYPE_SPECS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "JS": (
        ("JY", "原水", "raw water"), ("SS", "输水", "transmission"), ("ZS", "中水", "reclaimed water"),
        ("JP", "配水", "distribution"), ("JZ", "直饮水", "drinking water"), ("XS", "消防水", "fire water"),
        ("LS", "绿化水", "irrigation"), ("JH", "循环水", "circulating water"),
    ),
    "PS": (("YS", "雨水", "storm"), ("WS", "污水", "sewage"), ("HS", "雨污合流", "combined")),
    "RQ": (("MQ", "煤气", "town gas"), ("YH", "液化气", "LPG"), ("TR", "天然气", "natural gas")),
    "RL": (("RS", "热水", "hot water"), ("ZQ", "蒸汽", "steam")),
    "DL": (
        ("GD", "供电", "power supply"), ("LD", "路灯", "street lighting"), ("XH", "交通信号", "traffic signals"),
        ("DC", "电车", "tram"), ("GG", "广告", "advertising"),
    ),
    "TX": (("DH", "电话", "telephone"), ("DS", "有线电视", "cable TV"), ("XX", "信息网络", "data network"), ("GB", "广播", "broadcast")),
    "GY": (
        ("QQ", "氢气", "hydrogen"), ("YQ", "氧气", "oxygen"), ("GQ", "乙炔", "acetylene"), ("YX", "乙烯", "ethylene"),
        ("BQ", "苯", "benzene"), ("LQ", "氯气", "chlorine"), ("DQ", "氮气", "nitrogen"), ("EY", "二氧化碳", "carbon dioxide"),
        ("AQ", "氨气", "ammonia"), ("JB", "甲苯", "toluene"),
    ),
    "QT": (("ZH", "综合管沟", "utility tunnel"), ("BM", "不明管线", "unidentified")),
}

_SUBTYPE_OVERRIDES: dict[str, tuple[str, RGB]] = {"ZH": (DUCT, (0, 0, 0)), "BM": (PRESSURE, (102, 0, 204))}


def _subtypes() -> dict[str, Subtype]:
    out: dict[str, Subtype] = {}
    for major, specs in _SUBTYPE_SPECS.items():
        cat = CATEGORIES[major]
        for i, (code, zh, en) in enumerate(specs, start=1):
            kind, colour = _SUBTYPE_OVERRIDES.get(code, (cat.kind, cat.colour))
            out[code] = Subtype(code, major, f"{i:02d}", zh, en, kind, colour)
    return out


SUBTYPES: dict[str, Subtype] = _subtypes()


def pipe_kind(major: str, subtype: str | None = None) -> str:
    """Depth convention of a category: ``gravity`` (invert), ``pressure`` (top) or ``duct`` (bank top).

    The sub-type decides where it belongs to ``major`` (QT-ZH is a duct, QT-BM pressure); an unknown
    or mismatched sub-type falls back to the major's kind. Raises ``ValueError`` for an unknown major.
    """
    cat = CATEGORIES.get(major.upper())
    if cat is None:
        raise ValueError(f"unknown pipe category {major!r}")
    sub = SUBTYPES.get(subtype.upper()) if subtype else None
    return sub.kind if sub is not None and sub.major == cat.code else cat.kind


#: Extra names per major (None) or sub-type; codes, Chinese and English names are added automatically.
_CATEGORY_ALIASES: dict[tuple[str, str | None], tuple[str, ...]] = {
    ("JS", None): ("上水", "自来水", "供水", "water"),
    ("PS", None): ("下水", "drain", "sewer"),
    ("RQ", None): ("gas",),
    ("RL", None): ("供热", "暖气", "供暖", "heat"),
    ("DL", None): ("强电", "electric", "electricity"),
    ("TX", None): ("通讯", "电信", "DX", "弱电", "移动", "联通", "网通", "铁通", "telecommunication"),
    ("QT", None): ("其它",),
    ("JS", "ZS"): ("再生水", "回用水"),
    ("JS", "XS"): ("消防",),
    ("PS", "HS"): ("合流", "雨污合流水"),
    ("RQ", "YH"): ("液化石油气", "LPG"),
    ("DL", "XH"): ("信号", "信号灯", "交通信号灯"),
    ("TX", "DS"): ("广电", "有线", "闭路电视"),
    ("TX", "XX"): ("网络",),
    ("QT", "ZH"): ("综合管廊", "管廊"),
    ("QT", "BM"): ("不明",),
}

#: Layer/table-name suffixes stripped from category values (Chinese ones after an optional 管/管线/...).
_LAYER_SUFFIXES: tuple[str, ...] = tuple(
    {
        p + e
        for p in ("", "管", "管线", "管道", "管网", "管段")
        for e in ("", "点", "线", "段", "表", "点表", "线表", "段表", "层")
    }
    - {""}
) + tuple(s + e for s in ("", "_", "-") for e in ("point", "line", "points", "lines")) + ("_p", "_l", "_pt", "_ln", "-p", "-l")


def _category_entries() -> list[tuple[str, tuple[str, str | None]]]:
    entries: list[tuple[str, tuple[str, str | None]]] = []
    for cat in CATEGORIES.values():
        entries += [(name, (cat.code, None)) for name in (cat.code, cat.name_zh, cat.name_en)]
    for sub in SUBTYPES.values():
        entries += [(name, (sub.major, sub.code)) for name in (sub.code, sub.name_zh, sub.name_en)]
    for target, names in _CATEGORY_ALIASES.items():
        entries += [(name, target) for name in names]
    return entries


_CATEGORY_INDEX: dict[str, tuple[str, str | None]] = _build_index(_category_entries(), _LAYER_SUFFIXES)


def resolve_category(text: str | None) -> tuple[str, str | None] | None:
    """``(major, sub-type or None)`` for a category value or layer name; None when unknown.

    Accepts codes in any case (``js``, ``YS``), Chinese and English names, legacy names (电信/DX,
    上水, 下水, 煤气, 有线电视, 供电...) and layer names (``JSPOINT``, ``YS_LINE``, ``雨水线``,
    ``RQ管线点``): the name plus one of the layer suffixes is looked up directly, as in SQL.
    """
    if text is None:
        return None
    return _CATEGORY_INDEX.get(norm(text))


# ---------------------------------------------------------------------------------------------
# Appendix C: materials, burial, status


@dataclass(frozen=True)
class Term:
    """One Appendix C dictionary entry: code, Chinese and English names and extra aliases."""

    code: str
    name_zh: str
    name_en: str
    aliases: tuple[str, ...] = ()


MATERIALS: dict[str, Term] = {
    t.code: t
    for t in (
        Term("ZT", "铸铁", "cast iron", ("灰口铸铁", "灰铸铁", "CI")),
        Term("G", "钢", "steel", ("钢质", "无缝钢管", "焊接钢管", "镀锌钢管", "镀锌管", "螺旋钢管", "螺旋管", "不锈钢", "涂塑钢管", "钢塑复合管")),
        Term(
            "T", "混凝土", "concrete",
            ("砼", "钢筋混凝土", "钢筋砼", "钢砼", "预应力混凝土", "预应力钢筒混凝土管", "PCCP", "RC", "RCP", "水泥", "水泥管"),
        ),
        Term("PE", "聚乙烯", "polyethylene", ("HDPE", "MDPE", "PE100", "PE80", "PE-RT", "HDPE双壁波纹管", "双壁波纹管", "钢带增强聚乙烯螺旋波纹管")),
        Term("PVC", "聚氯乙烯", "PVC", ("UPVC", "U-PVC", "PVC-U", "PVCU", "CPVC", "硬聚氯乙烯")),
        Term("BLG", "玻璃钢", "GRP", ("玻璃钢夹砂管", "夹砂管", "FRP", "GRP")),
        Term("QM", "球墨铸铁", "ductile iron", ("球墨", "球墨管", "球铁", "DIP", "DI")),
        Term("ZS", "砖石", "brick and stone", ("砖石结构",)),
        Term("Z", "砖", "brick", ("砖砌", "砖混", "砖沟")),
        Term("S", "石", "stone", ("石砌", "浆砌石", "块石")),
        Term("SM", "石棉", "asbestos cement", ("石棉水泥", "石棉水泥管")),
        Term("TC", "陶瓷", "ceramic", ("陶土", "陶土管", "缸瓦管", "瓦管")),
        Term("TZ", "铜", "copper", ("铜芯", "铜缆", "铜质", "铜芯电缆", "CU")),
        Term("VL", "钢芯铝绞线", "steel-cored aluminium", ("铝绞线", "铝", "铝芯", "铝芯电缆")),
        Term("GX", "光纤", "optical fibre", ("光缆", "光纤光缆", "fiber", "fibre")),
    )
}

BURIALS: dict[str, Term] = {
    t.code: t
    for t in (
        Term("ZM", "直埋", "direct burial", ("直接埋设", "埋地")),
        Term("GM", "管埋", "in conduit", ("穿管", "套管")),
        Term("GK", "管块", "duct bank", ("排管", "管排")),
        Term("GG", "管沟", "trench", ("沟道", "电缆沟", "方沟", "盖板沟")),
        Term("JK", "架空", "overhead", ()),
        Term("DM", "地面", "on surface", ("地表", "明敷")),
        Term("SJ", "上架", "riser", ("上杆", "爬杆")),
        Term("XTD", "小通道", "inside a drain", ()),
        Term("ZH", "综合管廊", "utility tunnel", ("综合管沟", "管廊")),
        Term("RF", "人防", "civil-defence tunnel", ("人防通道",)),
        Term("JN", "井内连线", "inside a chamber", ("井内", "井内连接")),
        Term("DG", "顶管", "trenchless", ("非开挖", "定向钻", "拖拉管", "拉管", "牵引管", "水平定向钻")),
        Term("SX", "水下", "under water", ("水下敷设", "过河")),
    )
}

STATUSES: dict[int, Term] = {
    int(t.code): t
    for t in (
        Term("0", "在用", "in use", ("使用", "使用中", "在使用", "正常", "运行", "运行中", "inuse")),
        Term("1", "废弃", "abandoned", ("报废", "停用", "废管", "abandoned")),
        Term("2", "空管", "empty duct", ("空", "备用", "预埋", "empty")),
        Term("3", "其他", "other", ("其它",)),
    )
}


def _term_entries(terms: dict[K, Term], numeric: bool = False) -> list[tuple[str, K]]:
    entries: list[tuple[str, K]] = []
    for key, t in terms.items():
        names = (t.code, t.name_zh, t.name_en, *t.aliases) + ((f"{key}.0",) if numeric else ())
        entries += [(name, key) for name in names]
    return entries


_MATERIAL_INDEX: dict[str, str] = _build_index(_term_entries(MATERIALS), ("管", "管材", "质"))
_BURIAL_INDEX: dict[str, str] = _build_index(_term_entries(BURIALS), ("式", "敷设", "方式"))
_STATUS_INDEX: dict[str, int] = _build_index(_term_entries(STATUSES, numeric=True), ())


def resolve_material(text: str | None) -> str | None:
    """Appendix C.0.1 material code (``G``, ``T``, ``PE``...) for a code, name or common variant."""
    return None if text is None else _MATERIAL_INDEX.get(norm(text))


def resolve_burial(text: str | None) -> str | None:
    """Appendix C.0.2 burial code (``ZM``, ``GK``, ``DG``...) for a code, name or common variant."""
    return None if text is None else _BURIAL_INDEX.get(norm(text))


def resolve_status(text: str | None) -> int | None:
    """Appendix C.0.3 status (0 在用, 1 废弃, 2 空管, 3 其他) for a code or name."""
    return None if text is None else _STATUS_INDEX.get(norm(text))


# ---------------------------------------------------------------------------------------------
# point types: 特征 (feature points) and 附属物 (appurtenances)


@dataclass(frozen=True)
class PointType:
    """A feature point or appurtenance and what topology QC expects of it.

    ``valence`` is the (min, max) number of segments meeting there (max None = unbounded) or None
    when not checked; a chamber (``is_chamber``) may join any number of segments at different
    levels; ``standalone`` appurtenances legitimately have no segment.
    """

    name: str
    kind: str
    valence: tuple[int, int | None] | None = None
    is_chamber: bool = False
    standalone: bool = False
    aliases: tuple[str, ...] = ()


_TWO = (2, 2)
_ONE = (1, 1)

_FEATURES: tuple[PointType, ...] = (
    PointType("弯头", FEATURE, _TWO, aliases=("弯", "弯管", "弯点")),
    PointType("转折点", FEATURE, _TWO, aliases=("转折", "拐点", "转角点")),
    PointType("直线点", FEATURE, _TWO, aliases=("直线", "直通", "直线段点")),
    PointType("三通", FEATURE, (3, 3), aliases=("三岔", "三分支")),
    PointType("四通", FEATURE, (4, 4), aliases=("四岔", "四分支")),
    PointType("多通", FEATURE, (5, None), aliases=("五通", "六通", "多分支")),
    PointType("分支", FEATURE, (3, None), aliases=("分支点", "支线点")),
    PointType("变径", FEATURE, _TWO, aliases=("异径", "大小头")),
    PointType("变材", FEATURE, _TWO, aliases=("变材质",)),
    PointType("变深", FEATURE, _TWO, aliases=("变坡",)),
    PointType("预留口", FEATURE, _ONE, aliases=("预留", "预留管", "预留接口")),
    PointType("进水口", FEATURE, _ONE, aliases=("进水",)),
    PointType("出水口", FEATURE, _ONE, aliases=("出水",)),
    PointType("出地", FEATURE, _ONE, aliases=("出露", "出地面")),
    PointType("盖堵", FEATURE, _ONE, aliases=("堵头", "管堵", "封堵", "盲板")),
    PointType("入户", FEATURE, _ONE, aliases=("进户", "接户")),
    PointType("起点", FEATURE, _ONE),
    PointType("终点", FEATURE, _ONE),
    PointType("非普查", FEATURE, aliases=("非普查点", "非普查区")),
    PointType("交叉点", FEATURE, aliases=("交叉",)),
)

_APPURTENANCES: tuple[PointType, ...] = (
    PointType("检修井", APPURTENANCE, is_chamber=True, aliases=("窨井", "检查井", "井", "检修孔", "检查室", "雨水检查井", "污水检查井", "雨水井", "污水井", "合流井")),
    PointType("跌水井", APPURTENANCE, is_chamber=True),
    PointType("沉泥井", APPURTENANCE, is_chamber=True),
    PointType("溢流井", APPURTENANCE, is_chamber=True),
    PointType("截流井", APPURTENANCE, is_chamber=True),
    PointType("阀门", APPURTENANCE, aliases=("阀", "闸阀", "蝶阀", "阀门点")),
    PointType("阀门井", APPURTENANCE, is_chamber=True, aliases=("阀井", "闸阀井")),
    PointType("消防栓", APPURTENANCE, aliases=("消火栓", "地上消防栓", "地下消防栓", "地上消火栓", "地下消火栓")),
    PointType("水表", APPURTENANCE),
    PointType("水表井", APPURTENANCE, is_chamber=True, aliases=("表井",)),
    PointType("排气阀", APPURTENANCE, aliases=("排气阀门",)),
    PointType("排污阀", APPURTENANCE, aliases=("排泥阀",)),
    PointType("雨水箅", APPURTENANCE, aliases=("雨篦", "雨箅", "雨水篦", "雨水篦子", "雨篦子", "雨水箅子", "雨水口")),
    PointType("化粪池", APPURTENANCE, is_chamber=True),
    PointType("隔油池", APPURTENANCE, is_chamber=True),
    PointType("泵站", APPURTENANCE, is_chamber=True, aliases=("泵房", "提升泵站")),
    PointType("调压箱", APPURTENANCE, aliases=("调压柜", "调压器", "调压站")),
    PointType("凝水缸", APPURTENANCE, aliases=("凝水器", "排水器")),
    PointType("人孔", APPURTENANCE, is_chamber=True, aliases=("人孔井", "工作井", "电缆井")),
    PointType("手孔", APPURTENANCE, is_chamber=True, aliases=("手孔井",)),
    PointType("接线箱", APPURTENANCE, standalone=True, aliases=("交接箱", "分线箱", "分线盒", "配线箱")),
    PointType("变压器", APPURTENANCE, standalone=True, aliases=("箱变", "箱式变电站", "变电箱")),
    PointType("路灯杆", APPURTENANCE, standalone=True, aliases=("灯杆", "路灯")),
    PointType("电线杆", APPURTENANCE, standalone=True, aliases=("电杆", "电力杆")),
    PointType("通信杆", APPURTENANCE, standalone=True, aliases=("电信杆", "通讯杆")),
    PointType("水源", APPURTENANCE, aliases=("水厂", "水源井")),
    PointType("排放口", APPURTENANCE, aliases=("排水口", "排污口", "排出口")),
    PointType("水池", APPURTENANCE, is_chamber=True, aliases=("水塔", "清水池", "蓄水池")),
    PointType("调蓄池", APPURTENANCE, is_chamber=True, aliases=("调蓄设施", "蓄水设施")),
    PointType("阴极保护测试桩", APPURTENANCE, standalone=True, aliases=("测试桩", "阴极测试桩", "阴保桩")),
    PointType("标志桩", APPURTENANCE, standalone=True, aliases=("标桩", "警示桩", "标识桩")),
)

POINT_TYPES: dict[str, PointType] = {p.name: p for p in _FEATURES + _APPURTENANCES}


def _point_entries() -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    for p in POINT_TYPES.values():
        names = (p.name, *p.aliases)
        if p.kind == FEATURE:  # 三通点, 变径点, 入户点...
            names += tuple(n + "点" for n in names if not n.endswith("点"))
        entries += [(n, p.name) for n in names]
    return entries


_POINT_INDEX: dict[str, str] = _build_index(_point_entries(), ())


def resolve_point_type(text: str | None) -> PointType | None:
    """The point type for a 特征/附属物 value or alias (窨井 -> 检修井, 消火栓 -> 消防栓); None if unknown."""
    if text is None:
        return None
    name = _POINT_INDEX.get(norm(text))
    return POINT_TYPES[name] if name else None


#: Appendix F 2-digit sequences known from the domain brief's examples, per (sub-type, point type).
#: Sequences differ between sub-types (雨水检修井 02 vs 污水井 05), so only exact pairs are checked.
POINT_SEQUENCES: dict[tuple[str, str], str] = {
    ("YS", "检修井"): "02",
    ("YS", "雨水箅"): "04",
    ("WS", "检修井"): "05",
    ("JP", "阀门"): "04",
    ("JP", "消防栓"): "02",
    ("SS", "阀门井"): "04",
}


def point_sequence(subtype: str | None, point_type: str | None) -> str | None:
    """The known Appendix F sequence of a point type within a sub-type (aliases allowed), else None."""
    if not subtype or not point_type:
        return None
    p = resolve_point_type(point_type)
    return POINT_SEQUENCES.get((subtype.upper(), p.name)) if p else None


# ---------------------------------------------------------------------------------------------
# tables for SQL joins

#: Column names of each table returned by :func:`dictionary_rows`.
DICTIONARY_COLUMNS: dict[str, tuple[str, ...]] = {
    "category": ("code", "digit", "name_zh", "name_en", "kind", "r", "g", "b"),
    "subtype": ("code", "major", "digits", "name_zh", "name_en", "kind", "r", "g", "b"),
    "category_alias": ("alias", "major", "subtype"),
    "material": ("code", "name_zh", "name_en"),
    "material_alias": ("alias", "code"),
    "burial": ("code", "name_zh", "name_en"),
    "burial_alias": ("alias", "code"),
    "status": ("code", "name_zh", "name_en"),
    "status_alias": ("alias", "code"),
    "point_type": ("alias", "name", "kind", "valence_min", "valence_max", "is_chamber", "standalone"),
    "point_sequence": ("major", "subtype", "name", "seq"),
}


def dictionary_rows() -> dict[str, list[tuple]]:
    """All dictionaries as rows (layouts in :data:`DICTIONARY_COLUMNS`) for registering as DuckDB tables.

    ``*_alias`` tables are keyed by :func:`norm`-alised aliases, one row per key, and hold exactly
    what the Python resolvers look up: join with ``NORM_SQL.format(x=column) = alias``.
    ``point_type.valence_*`` are NULL when unchecked (``valence_max`` NULL = unbounded).
    """
    return {
        "category": [(c.code, c.digit, c.name_zh, c.name_en, c.kind, *c.colour) for c in CATEGORIES.values()],
        "subtype": [(s.code, s.major, s.digits, s.name_zh, s.name_en, s.kind, *s.colour) for s in SUBTYPES.values()],
        "category_alias": [(a, major, sub) for a, (major, sub) in _CATEGORY_INDEX.items()],
        "material": [(t.code, t.name_zh, t.name_en) for t in MATERIALS.values()],
        "material_alias": list(_MATERIAL_INDEX.items()),
        "burial": [(t.code, t.name_zh, t.name_en) for t in BURIALS.values()],
        "burial_alias": list(_BURIAL_INDEX.items()),
        "status": [(k, t.name_zh, t.name_en) for k, t in STATUSES.items()],
        "status_alias": list(_STATUS_INDEX.items()),
        "point_type": [_point_row(a, POINT_TYPES[name]) for a, name in _POINT_INDEX.items()],
        "point_sequence": [(SUBTYPES[s].major, s, name, seq) for (s, name), seq in POINT_SEQUENCES.items()],
    }


def _point_row(alias: str, p: PointType) -> tuple:
    vmin, vmax = p.valence if p.valence else (None, None)
    return (alias, p.name, p.kind, vmin, vmax, p.is_chamber, p.standalone)
