"""Canonical pipe-survey fields and the alias table that maps delivered column names onto them.

Every reader turns a delivered table into one with canonical column names (below), all values
still text; normalisation and QC work only on canonical names. A city's own column names are added
with a mapping file (:func:`load_mapping`), no code needed.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cim.errors import InvalidInputError


@dataclass(frozen=True)
class Field:
    """One canonical field: its name, Chinese label, kind and whether QC requires it."""

    name: str
    label: str
    kind: str  # "text" | "number" | "int" | "date"
    required: bool = False


POINT_FIELDS: tuple[Field, ...] = (
    Field("point_id", "物探点号", "text", True),
    Field("map_no", "图上点号", "text", True),
    Field("category", "管线类别", "text"),
    Field("feature", "特征", "text"),
    Field("appurtenance", "附属物", "text"),
    Field("code", "点编码", "text", True),
    Field("x", "X坐标(纵,北)", "number", True),
    Field("y", "Y坐标(横,东)", "number", True),
    Field("ground_h", "地面高程", "number", True),
    Field("well_depth", "井深", "number"),
    Field("well_bottom_h", "井底高程", "number"),
    Field("cover_size", "井盖规格", "text"),
    Field("cover_shape", "井盖形状", "text"),
    Field("cover_material", "井盖材质", "text"),
    Field("offset_well", "偏心井位", "text"),
    Field("road", "道路名称", "text"),
    Field("status", "状态", "text"),
    Field("map_sheet", "图幅号", "text"),
    Field("survey_unit", "探测单位", "text"),
    Field("survey_date", "探测日期", "date"),
    Field("remark", "备注", "text"),
)

LINE_FIELDS: tuple[Field, ...] = (
    Field("line_id", "管线编号", "text"),
    Field("start_id", "起点点号", "text", True),
    Field("end_id", "终点点号", "text", True),
    Field("category", "管线类别", "text"),
    Field("code", "线编码", "text"),
    Field("start_depth", "起点埋深", "number", True),
    Field("end_depth", "终点埋深", "number", True),
    Field("start_h", "起点高程", "number", True),
    Field("end_h", "终点高程", "number", True),
    Field("size", "管径/断面", "text", True),
    Field("material", "材质", "text", True),
    Field("burial", "埋设方式", "text", True),
    Field("pressure", "压力", "text"),
    Field("voltage", "电压", "text"),
    Field("cable_count", "电缆条数", "int"),
    Field("hole_count", "总孔数", "int"),
    Field("used_holes", "已用孔数", "int"),
    Field("flow_dir", "流向", "text"),
    Field("protect", "保护材料", "text", True),
    Field("owner", "权属单位", "text", True),
    Field("year", "建设年代", "text", True),
    Field("usage", "管线性质", "text"),
    Field("road", "道路名称", "text", True),
    Field("status", "状态", "text"),
    Field("survey_unit", "探测单位", "text"),
    Field("survey_date", "探测日期", "date"),
    Field("remark", "备注", "text"),
)

#: Aliases per canonical field, compared after :func:`normalise_header`. Chinese labels, CJJ 61 style
#: English column codes and abbreviations seen in delivered databases.
POINT_ALIASES: dict[str, tuple[str, ...]] = {
    "point_id": ("物探点号", "点号", "探测点号", "exp_no", "expno", "exp_num", "point_no", "pointno", "ptno", "wtdh", "pid"),
    "map_no": ("图上点号", "图上编号", "map_no", "mapno", "map_num", "tsdh"),
    "category": ("管线类别", "管线类型", "类别", "管类", "type", "category", "pipe_type", "gxlb", "layer"),
    "feature": ("特征", "特征点", "feature", "feat", "tz", "tzd"),
    "appurtenance": ("附属物", "附属设施", "subsid", "fsw", "attachment", "appurtenance"),
    "code": ("点编码", "要素代码", "要素编码", "编码", "代码", "code", "ysdm", "fcode", "feature_code"),
    "x": ("x", "x坐标", "纵坐标", "北坐标", "x_coord", "xcoord", "north", "northing", "n"),
    "y": ("y", "y坐标", "横坐标", "东坐标", "y_coord", "ycoord", "east", "easting", "e"),
    "ground_h": ("地面高程", "地面高", "高程", "surf_h", "surfh", "ground_h", "dmgc", "h", "surface_h"),
    "well_depth": ("井深", "井底埋深", "well_deep", "welldeep", "well_depth", "js"),
    "well_bottom_h": ("井底高程", "well_bottom", "well_bot_h", "jdgc"),
    "cover_size": ("井盖规格", "井盖尺寸", "cover_size", "cover_spec", "jgcc"),
    "cover_shape": ("井盖形状", "cover_shape", "jgxz"),
    "cover_material": ("井盖材质", "cover_mat", "cover_material", "jgcz"),
    "offset_well": ("偏心井位", "偏心井", "offset", "pxjw"),
    "road": ("道路名称", "所在道路", "道路", "road", "road_name", "roadname", "dlmc"),
    "status": ("状态", "使用状态", "管线状态", "status", "state", "zt"),
    "map_sheet": ("图幅号", "图幅", "map_sheet", "sheet", "tfh"),
    "survey_unit": ("探测单位", "普查单位", "det_unit", "survey_unit", "tcdw"),
    "survey_date": ("探测日期", "探测时间", "普查日期", "det_date", "survey_date", "tcrq"),
    "remark": ("备注", "remark", "note", "bz"),
}

LINE_ALIASES: dict[str, tuple[str, ...]] = {
    "line_id": ("管线编号", "管段编号", "线号", "line_id", "lineid", "line_no", "gxbh"),
    "start_id": ("起点点号", "起始点号", "起点", "起点号", "s_point", "spoint", "start_point", "from_id", "qddh"),
    "end_id": ("终点点号", "终止点号", "终点", "终点号", "e_point", "epoint", "end_point", "to_id", "zddh"),
    "category": POINT_ALIASES["category"],
    "code": ("线编码", "要素代码", "编码", "代码", "code", "ysdm", "fcode"),
    "start_depth": ("起点埋深", "起始埋深", "s_deep", "sdeep", "start_depth", "qdms"),
    "end_depth": ("终点埋深", "终止埋深", "e_deep", "edeep", "end_depth", "zdms"),
    "start_h": ("起点高程", "起点管线高程", "起点管顶高程", "起点管底高程", "s_h", "sh", "start_h", "s_elev", "qdgc"),
    "end_h": ("终点高程", "终点管线高程", "终点管顶高程", "终点管底高程", "e_h", "eh", "end_h", "e_elev", "zdgc"),
    "size": ("管径", "管径/断面", "断面尺寸", "规格", "截面尺寸", "沟截面宽高", "d_s", "ds", "psize", "pipe_size", "diameter", "gj", "dmcc"),
    "material": ("材质", "管材", "material", "mat", "cz"),
    "burial": ("埋设方式", "埋设类型", "embed", "bury", "burial", "msfs"),
    "pressure": ("压力", "压力值", "pressure", "press", "yl"),
    "voltage": ("电压", "电压值", "voltage", "volt", "dy"),
    "cable_count": ("电缆条数", "电缆根数", "cab_count", "cable_count", "dlts"),
    "hole_count": ("总孔数", "孔数", "hole_count", "zks"),
    "used_holes": ("已用孔数", "占用孔数", "used_hole", "used_holes", "yyks"),
    "flow_dir": ("流向", "flow_dir", "flowdir", "lx"),
    "protect": ("保护材料", "套管材料", "protect", "bhcl"),
    "owner": ("权属单位", "管理单位", "所属单位", "owner", "ownership", "qsdw"),
    "year": ("建设年代", "埋设年代", "敷设年代", "埋设日期", "bur_year", "mdate", "build_year", "year", "jsnd"),
    "usage": ("管线性质", "用途", "usage", "use", "gxxz"),
    "road": POINT_ALIASES["road"],
    "status": POINT_ALIASES["status"],
    "survey_unit": POINT_ALIASES["survey_unit"],
    "survey_date": POINT_ALIASES["survey_date"],
    "remark": POINT_ALIASES["remark"],
}

_SPACE = re.compile(r"[\s()（）\[\]【】:：]+")


def normalise_header(name: str) -> str:
    """Case-folded header without spaces, brackets or a UTF-8 BOM, for alias lookups."""
    return _SPACE.sub("", str(name).replace("\ufeff", "")).strip().lower()


@dataclass(frozen=True)
class FieldMapping:
    """Alias lookups for point and line tables, with a city's own additions."""

    points: dict[str, str]
    lines: dict[str, str]

    def for_kind(self, kind: str) -> dict[str, str]:
        """The lookup for ``"point"`` or ``"line"`` tables."""
        return self.points if kind == "point" else self.lines


def _lookup(aliases: dict[str, tuple[str, ...]], fields: tuple[Field, ...]) -> dict[str, str]:
    table: dict[str, str] = {}
    for f in fields:
        table.setdefault(normalise_header(f.name), f.name)
        table.setdefault(normalise_header(f.label), f.name)
    for canonical, names in aliases.items():
        for alias in names:
            table.setdefault(normalise_header(alias), canonical)
    return table


def default_mapping() -> FieldMapping:
    """The built-in alias tables."""
    return FieldMapping(_lookup(POINT_ALIASES, POINT_FIELDS), _lookup(LINE_ALIASES, LINE_FIELDS))


def load_mapping(path: Path | None) -> FieldMapping:
    """The built-in aliases plus a user's mapping file (TOML or JSON).

    The file maps a city's column names to canonical field names, per table kind::

        [points]
        "探查点号" = "point_id"
        [lines]
        "起点号码" = "start_id"

    User entries win over built-in ones.
    """
    base = default_mapping()
    if path is None:
        return base
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except FileNotFoundError:
        raise InvalidInputError("mapping file does not exist", file=str(path)) from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInputError(f"mapping file is not valid TOML/JSON: {exc}", file=str(path)) from None
    known = {"point": {f.name for f in POINT_FIELDS}, "line": {f.name for f in LINE_FIELDS}}
    out = {"point": dict(base.points), "line": dict(base.lines)}
    for section, kind in (("points", "point"), ("lines", "line")):
        for alias, canonical in (data.get(section) or {}).items():
            if canonical not in known[kind]:
                raise InvalidInputError(
                    f"mapping names unknown {kind} field {canonical!r} (known: {sorted(known[kind])})",
                    file=str(path),
                    field=alias,
                )
            out[kind][normalise_header(alias)] = canonical
    unknown = set(data) - {"points", "lines"}
    if unknown:
        raise InvalidInputError(f"mapping has unknown sections {sorted(unknown)} (use [points] and [lines])", file=str(path))
    return FieldMapping(out["point"], out["line"])


def map_columns(columns: list[str], kind: str, mapping: FieldMapping) -> dict[str, str]:
    """Source column -> canonical field for the columns the mapping knows (first match wins)."""
    lookup = mapping.for_kind(kind)
    result: dict[str, str] = {}
    taken: set[str] = set()
    for col in columns:
        canonical = lookup.get(normalise_header(col))
        if canonical and canonical not in taken:
            result[col] = canonical
            taken.add(canonical)
    return result
