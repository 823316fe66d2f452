"""The pipe-survey QC catalogue (domain brief §2.11) as data: rule ids, severities, tolerances.

Rule ids are stable: reports, the API and other tools key on them. Tolerances are defaults a
deployment may override (``Tolerances``); severities follow acceptance practice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How bad a finding is: errors refuse an ingest unless the user keeps them."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Rule:
    """One QC rule: stable id, number in the catalogue, severity, titles and what it checks."""

    id: str
    number: int
    severity: Severity
    title_zh: str
    title_en: str
    description: str
    applies_to: frozenset[str] = frozenset({"survey", "model"})  # source kinds


SURVEY = frozenset({"survey"})

RULES: tuple[Rule, ...] = (
    Rule("header", 1, Severity.ERROR, "表头检查", "Header sanity", "column names are non-empty and unique"),
    Rule("not_null", 2, Severity.ERROR, "必填项检查", "Mandatory fields", "CJJ 61 mandatory fields are filled", SURVEY),
    Rule("numeric", 3, Severity.ERROR, "数值检查", "Numeric fields", "coordinates, heights, depths and sizes parse as numbers"),
    Rule("map_no_mismatch", 4, Severity.WARNING, "图上点号一致性", "Map no. vs survey no.", "图上点号 equals 物探点号", SURVEY),
    Rule("duplicate_point_id", 5, Severity.ERROR, "点号重复", "Duplicate point IDs", "the same 物探点号 appears twice"),
    Rule("duplicate_coordinates", 6, Severity.WARNING, "坐标重复", "Duplicate coordinates", "different points share X, Y and H"),
    Rule("feature_xor_appurtenance", 7, Severity.ERROR, "特征/附属物互斥", "Feature XOR appurtenance", "exactly one of 特征 and 附属物 is given", SURVEY),
    Rule("code_consistency", 8, Severity.ERROR, "编码一致性", "Feature code consistency", "the 8-digit code matches category, element and point type", SURVEY),
    Rule("missing_end_id", 9, Severity.ERROR, "起止点号缺失", "Missing end IDs", "a segment lacks its start or end point ID"),
    Rule("zero_length", 10, Severity.ERROR, "零长度/自环", "Zero length / self loop", "start equals end, or the segment is shorter than the tolerance"),
    Rule("duplicate_segment", 11, Severity.ERROR, "管段重复", "Duplicate segment", "the same start/end pair (either direction) appears twice"),
    Rule("dangling_reference", 12, Severity.ERROR, "悬挂引用", "Dangling reference", "a segment references a point that is not in the point table"),
    Rule("orphan_point", 13, Severity.WARNING, "孤立点", "Orphan point", "a point no segment uses (stand-alone appurtenances excepted)"),
    Rule("elevation_identity", 14, Severity.ERROR, "高程闭合", "Elevation identity", "ground − depth = recorded elevation at both ends"),
    Rule("shared_point_consistency", 15, Severity.ERROR, "连接点一致性", "Shared-point consistency", "segments meeting at a non-chamber point agree in elevation and section"),
    Rule("depth_range", 16, Severity.WARNING, "埋深范围", "Depth range", "depth is positive, below the maximum, and covers the pipe by the category minimum"),
    Rule("long_segment", 17, Severity.WARNING, "超长管段", "Long segment", "3D length above the tolerance"),
    Rule("steep_segment", 18, Severity.WARNING, "陡坡管段", "Steep segment", "slope angle above the tolerance"),
    Rule("valence", 19, Severity.WARNING, "连接数检查", "Valence", "三通 joins 3 segments, 四通 4, 弯头/直线点 2, 预留口/盖堵 1"),
    Rule("reversed_slope", 20, Severity.ERROR, "倒坡", "Reversed slope", "gravity pipe invert rises along the flow"),
    Rule("under_slope", 21, Severity.WARNING, "坡度不足", "Under slope", "gravity pipe slope below the minimum for its diameter"),
    Rule("diameter_decrease", 22, Severity.WARNING, "管径逆变", "Diameter decreases downstream", "a gravity pipe is smaller than the pipe flowing into it"),
    Rule("invert_above_ground", 23, Severity.ERROR, "管底高于地面", "Pipe above ground", "a buried pipe's elevation is above the ground, or a chamber bottom above the invert"),
    Rule("crossing_without_junction", 24, Severity.WARNING, "交叉未连接", "Crossing without junction", "same-system pipes cross in plan at the same level without a shared node"),
    Rule("clearance", 25, Severity.INFO, "净距不足", "Clearance", "pipes of different categories closer than GB 50289-2016 Tables 4.1.9/4.1.14"),
    Rule("dictionary_value", 26, Severity.ERROR, "字典值检查", "Dictionary values", "category, material, burial and status are CJJ 61 Appendix B/C values"),
    Rule("crs_region", 27, Severity.ERROR, "坐标系检查", "CRS sanity", "coordinates fall inside the configured region in the given CRS"),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


@dataclass(frozen=True)
class Tolerances:
    """Numeric tolerances of the catalogue (metres, degrees, ratios)."""

    elevation_identity_m: float = 0.01
    shared_point_m: float = 0.02
    min_length_m: float = 0.05
    long_segment_m: float = 75.0
    steep_angle_deg: float = 20.0
    max_depth_m: float = 12.0
    reversed_slope_m: float = 0.005
    crossing_gap_m: float = 0.10
    duplicate_xy_m: float = 0.001
    # minimum cover by major category (m); GB 50014-2021 §5.3.7 footway 0.6, GB 50028 non-carriageway 0.6
    min_cover_m: dict[str, float] = field(
        default_factory=lambda: {"PS": 0.6, "RQ": 0.6, "JS": 0.5, "RL": 0.5, "DL": 0.3, "TX": 0.3}
    )


@dataclass(frozen=True)
class Finding:
    """One QC finding: which rule, where (file, row, feature, field), the value and a message.

    ``row`` follows the staging contract: the row a user sees (header = row 1). The JSON report
    writes exactly these keys (see ``report.schema.json``).
    """

    rule_id: str
    severity: str
    file: str | None
    row: int | None
    feature_id: str | None
    field: str | None
    value: str | None
    message: str
    category: str | None = None
    layer: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The stable JSON shape."""
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "file": self.file,
            "row": self.row,
            "feature_id": self.feature_id,
            "field": self.field,
            "value": self.value,
            "message": self.message,
            "category": self.category,
            "layer": self.layer,
        }
