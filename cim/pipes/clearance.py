"""GB 50289-2016 clearance tables, loaded from versioned data files with per-cell provenance.

Two tables: 4.1.14 (vertical clearance at crossings, classes only) and 4.1.9 (horizontal clearance
between pipes and between a pipe and a building, with conditions on diameter, gas pressure class and
burial). A segment is described by a :class:`SegmentProfile` (its table classes and the facts the
conditions test); :func:`horizontal_cell` / :func:`building_cell` / :func:`vertical_cell` pick the cell
for a pair and say which one was used, or None when the table has no requirement for it.

Example::

    water = segment_profile("JS", None, "ZM", 300, None, "0.3MPa")
    drain = segment_profile("PS", "YS", "ZM", 600, None, None)
    horizontal_cell(water, drain).clearance_m  # 1.5 (d > 200)
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cim.errors import InvalidInputError

DATA = Path(__file__).parent / "data"
VERTICAL_TABLE = DATA / "gb50289_2016_table_4_1_14.csv"
HORIZONTAL_TABLE = DATA / "gb50289_2016_table_4_1_9.csv"

#: Segment class SQL: which table row/column a segment belongs to (category, sub-type, burial).
CLEARANCE_CLASS_SQL = """CASE
    WHEN {s}.category = 'JS' AND {s}.subtype = 'ZS' THEN 'reclaimed'
    WHEN {s}.category = 'JS' THEN 'water'
    WHEN {s}.category = 'PS' THEN 'drain'
    WHEN {s}.category = 'RL' THEN 'heat'
    WHEN {s}.category = 'RQ' THEN 'gas'
    WHEN {s}.category = 'TX' THEN CASE WHEN coalesce({s}.burial, 'ZM') = 'ZM' THEN 'telecom_direct' ELSE 'telecom_protected' END
    WHEN {s}.category = 'DL' THEN CASE WHEN coalesce({s}.burial, 'ZM') = 'ZM' THEN 'power_direct' ELSE 'power_protected' END
    WHEN {s}.category = 'QT' AND {s}.subtype = 'ZH' THEN 'utility_trench'
END"""

#: Horizontal (4.1.9) class by category; JS/ZS and QT/ZH are refined in :func:`horizontal_class`.
_HORIZONTAL_BY_CATEGORY = {"JS": "water", "PS": "drain", "RL": "heat", "RQ": "gas", "DL": "power",
                           "TX": "telecom", "GY": "industrial", "QT": "other"}
HORIZONTAL_CLASSES = ("building", "water", "reclaimed", "drain", "heat", "gas", "power", "telecom",
                      "utility_trench", "industrial", "other", "unknown")
#: GB 50028 gas pressure classes, upper bounds in MPa (inclusive; 低压 is below 0.01), domain brief §2.10.
GAS_CLASSES: tuple[tuple[str, float], ...] = (
    ("low", 0.01), ("medium_b", 0.2), ("medium_a", 0.4), ("sub_high_b", 0.8), ("sub_high_a", 1.6),
    ("high_b", 2.5), ("high_a", 4.0),
)
GAS_CLASS_NAMES = tuple(name for name, _ in GAS_CLASSES)
BURIAL_CONDITIONS = ("direct", "conduit")
CONFIDENCES = {"H": "checked against the official text", "M": "secondary source or strong memory",
               "L": "memory only, verify"}


# ---------------------------------------------------------------------------------------------
# vertical table 4.1.14


@dataclass(frozen=True)
class ClearanceCell:
    """One table cell: the pair, the clearance and where the value comes from."""

    class_a: str
    class_b: str
    clearance_m: float
    confidence: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """The cell as JSON: table, classes, clearance, confidence and source."""
        return {"table": "GB 50289-2016 4.1.14", "class_a": self.class_a, "class_b": self.class_b,
                "clearance_m": self.clearance_m, "confidence": self.confidence, "source": self.source}


def _data_lines(path: Path) -> list[str]:
    return [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]


@lru_cache(maxsize=4)
def load_table(path: Path = VERTICAL_TABLE) -> tuple[ClearanceCell, ...]:
    """Cells of a clearance table file (lines starting with '#' are comments), both orders."""
    cells: dict[tuple[str, str], ClearanceCell] = {}
    for row in csv.DictReader(_data_lines(path)):
        cell = ClearanceCell(row["class_a"], row["class_b"], float(row["clearance_m"]), row["confidence"], row["source"])
        cells[(cell.class_a, cell.class_b)] = cell
        cells.setdefault(
            (cell.class_b, cell.class_a),
            ClearanceCell(cell.class_b, cell.class_a, cell.clearance_m, cell.confidence, cell.source),
        )
    return tuple(cells.values())


@lru_cache(maxsize=4)
def _vertical_index(path: Path) -> dict[tuple[str, str], ClearanceCell]:
    return {(c.class_a, c.class_b): c for c in load_table(path)}


def vertical_class(category: str | None, subtype: str | None, burial: str | None) -> str | None:
    """Table 4.1.14 class of a segment (the Python twin of :data:`CLEARANCE_CLASS_SQL`), None if unlisted."""
    direct = (burial or "ZM") == "ZM"
    if category == "JS":
        return "reclaimed" if subtype == "ZS" else "water"
    if category == "TX":
        return "telecom_direct" if direct else "telecom_protected"
    if category == "DL":
        return "power_direct" if direct else "power_protected"
    if category == "QT":
        return "utility_trench" if subtype == "ZH" else None
    return {"PS": "drain", "RL": "heat", "RQ": "gas"}.get(category or "")


# ---------------------------------------------------------------------------------------------
# horizontal table 4.1.9


@dataclass(frozen=True)
class HorizontalCell:
    """One cell of Table 4.1.9: classes with their conditions, clearance and provenance."""

    class_a: str
    condition_a: str
    class_b: str
    condition_b: str
    clearance_m: float
    confidence: str
    source: str

    def label(self) -> str:
        """``water(d>200) ↔ drain``: the cell as people read it."""
        def side(cls: str, cond: str) -> str:
            return cls if cond == "*" else f"{cls}({cond})"
        return f"{side(self.class_a, self.condition_a)} ↔ {side(self.class_b, self.condition_b)}"

    def to_dict(self) -> dict[str, Any]:
        """The cell as JSON: table, classes, conditions, clearance, confidence and source."""
        return {"table": "GB 50289-2016 4.1.9", "class_a": self.class_a, "condition_a": self.condition_a,
                "class_b": self.class_b, "condition_b": self.condition_b, "clearance_m": self.clearance_m,
                "confidence": self.confidence, "source": self.source, "label": self.label()}


_D_COND = re.compile(r"^d(<=|>)(\d+(?:\.\d+)?)$")


def _check_condition(cond: str, cls: str) -> None:
    for token in cond.split("&"):
        ok = (token == "*" or _D_COND.match(token) is not None or token in BURIAL_CONDITIONS
              or (token in GAS_CLASS_NAMES and cls == "gas"))
        if not ok:
            raise ValueError(f"unknown condition {token!r} for class {cls!r}")


@lru_cache(maxsize=4)
def load_horizontal_table(path: Path = HORIZONTAL_TABLE) -> tuple[HorizontalCell, ...]:
    """Cells of Table 4.1.9 as written (one order), checked: known classes and conditions, a positive
    clearance, a confidence H/M/L and a source.

    Raises:
        InvalidInputError: a malformed row (file, row and field named).
    """
    numbered = [(n, ln) for n, ln in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1)
                if ln and not ln.startswith("#")]
    cells = []
    for (n, _), row in zip(numbered[1:], csv.DictReader(ln for _, ln in numbered), strict=True):
        try:
            for name in ("class_a", "class_b"):
                if row[name] not in HORIZONTAL_CLASSES:
                    raise ValueError(f"unknown class {row[name]!r}")
            _check_condition(row["condition_a"], row["class_a"])
            _check_condition(row["condition_b"], row["class_b"])
            cell = HorizontalCell(row["class_a"], row["condition_a"], row["class_b"], row["condition_b"],
                                  float(row["clearance_m"]), row["confidence"], (row["source"] or "").strip())
            if not (cell.clearance_m > 0 and math.isfinite(cell.clearance_m)):
                raise ValueError(f"clearance_m must be a positive number, got {cell.clearance_m}")
            if cell.confidence not in CONFIDENCES:
                raise ValueError(f"confidence must be one of {'/'.join(CONFIDENCES)}, got {cell.confidence!r}")
            if not cell.source:
                raise ValueError("source is empty")
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"bad clearance cell: {exc}", file=str(path), row=n) from None
        cells.append(cell)
    return tuple(cells)


def gas_pressure_class(text: str | None) -> frozenset[str] | None:
    """GB 50028 pressure class(es) of a 压力 value: ``低压``, ``中压A``, ``次高压B``, ``0.3MPa``, ``200kPa``...

    A class written without its letter (``中压``, ``次高压``, ``高压``) gives both classes; a bare number is read
    as MPa when below 10. None when the text is empty or not understood.
    """
    if text is None:
        return None
    s = re.sub(r"[\s()\[\]级]", "", unicodedata.normalize("NFKC", str(text)).lower())
    if not s:
        return None
    for prefix, name in (("次高压", "sub_high"), ("中压", "medium"), ("高压", "high")):
        if s.startswith(prefix):
            letter = s[len(prefix):][:1]
            if letter in ("a", "b"):
                return frozenset({f"{name}_{letter}"})
            return frozenset({f"{name}_a", f"{name}_b"})
    if s.startswith("低压"):
        return frozenset({"low"})
    m = re.match(r"^(\d+(?:\.\d*)?|\.\d+)(mpa|kpa|pa)?$", s)
    if m is None:
        return None
    value, unit = float(m.group(1)), m.group(2)
    if unit is None and value >= 10:
        return None
    mpa = value * {"mpa": 1.0, "kpa": 1e-3, "pa": 1e-6, None: 1.0}[unit]
    for name, upper in GAS_CLASSES:
        if mpa < upper or (mpa <= upper and name != "low"):
            return frozenset({name})
    return frozenset({"high_a"})  # above GB 50028's 4.0 MPa: no 4.1.9 cell applies either way


def horizontal_class(category: str | None, subtype: str | None) -> str:
    """Table 4.1.9 class of a segment's category/sub-type (``unknown`` without a category)."""
    if category == "JS" and subtype == "ZS":
        return "reclaimed"
    if category == "QT" and subtype == "ZH":
        return "utility_trench"
    return _HORIZONTAL_BY_CATEGORY.get(category or "", "unknown")


@dataclass(frozen=True)
class SegmentProfile:
    """What the clearance tables need to know about one segment.

    ``d_mm`` is the diameter (the width of a rectangular section), None when unknown; ``gas`` the possible
    pressure classes (None: unknown); ``burial`` ``direct`` (直埋 or not recorded) or ``conduit``.
    """

    horizontal: str
    vertical: str | None
    d_mm: float | None = None
    gas: frozenset[str] | None = None
    burial: str = "direct"
    pressure_text: str | None = None

    @property
    def label(self) -> str:
        """``gas(medium_a|medium_b, d=200)``: class and the facts, for messages."""
        facts = []
        if self.horizontal == "gas":
            facts.append("|".join(sorted(self.gas)) if self.gas else "pressure class unknown")
        if self.d_mm is not None:
            facts.append(f"d={self.d_mm:g}")
        if self.horizontal in ("power", "telecom"):
            facts.append(self.burial)
        return f"{self.horizontal}({', '.join(facts)})" if facts else self.horizontal


BUILDING = SegmentProfile("building", None)


def segment_profile(category: str | None, subtype: str | None, burial: str | None, diameter_mm: float | None,
                    width_mm: float | None, pressure: str | None) -> SegmentProfile:
    """The profile of a stored segment from its columns (burial as an Appendix C code)."""
    d = diameter_mm if diameter_mm is not None and math.isfinite(diameter_mm) else width_mm
    d = float(d) if d is not None and math.isfinite(d) and d > 0 else None
    hcls = horizontal_class(category, subtype)
    return SegmentProfile(
        hcls, vertical_class(category, subtype, burial), d,
        gas_pressure_class(pressure) if hcls == "gas" else None,
        "direct" if (burial or "ZM") == "ZM" else "conduit",
        pressure,
    )


@dataclass(frozen=True)
class CellMatch:
    """The cell picked for a pair (``a`` is the first profile asked for) and the assumptions it rests on."""

    cell: HorizontalCell | ClearanceCell
    notes: tuple[str, ...] = field(default=())

    @property
    def clearance_m(self) -> float:
        return self.cell.clearance_m

    @property
    def confidence(self) -> str:
        return self.cell.confidence

    def to_dict(self) -> dict[str, Any]:
        """The cell as JSON plus ``notes`` (assumptions, e.g. an unknown diameter taken as the stricter case)."""
        return {**self.cell.to_dict(), "notes": list(self.notes)}


def _meets(cond: str, p: SegmentProfile) -> tuple[bool, list[str]]:
    """Whether ``p`` satisfies ``cond``; unknown facts satisfy any condition on them (noted)."""
    notes: list[str] = []
    for token in cond.split("&"):
        if token == "*":
            continue
        if m := _D_COND.match(token):
            if p.d_mm is None:
                notes.append(f"{p.horizontal} diameter unknown: stricter cell taken")
            elif not (p.d_mm <= float(m.group(2)) if m.group(1) == "<=" else p.d_mm > float(m.group(2))):
                return False, []
        elif token in BURIAL_CONDITIONS:
            if p.burial != token:
                return False, []
        elif p.gas is None:
            notes.append(f"gas pressure class unknown ({p.pressure_text!r}): stricter cell taken")
        elif token not in p.gas:
            return False, []
        elif len(p.gas) > 1:
            notes.append(f"gas pressure {p.pressure_text!r} names no A/B class: stricter cell taken")
    return True, notes


def horizontal_cell(a: SegmentProfile, b: SegmentProfile, path: Path = HORIZONTAL_TABLE) -> CellMatch | None:
    """The Table 4.1.9 cell for a pair (either order), the largest when several match; None: no requirement."""
    return _horizontal_cell(a, b, path)


@lru_cache(maxsize=8192)
def _horizontal_cell(a: SegmentProfile, b: SegmentProfile, path: Path) -> CellMatch | None:
    matches: list[CellMatch] = []
    for cell in load_horizontal_table(path):
        for p, q in ((a, b), (b, a)):
            if (cell.class_a, cell.class_b) != (p.horizontal, q.horizontal):
                continue
            ok_a, notes_a = _meets(cell.condition_a, p)
            ok_b, notes_b = _meets(cell.condition_b, q)
            if ok_a and ok_b:
                matches.append(CellMatch(cell, tuple(dict.fromkeys(notes_a + notes_b))))
    if not matches:
        return None
    best = max(matches, key=lambda m: m.clearance_m)  # first of the largest: table order
    if all(m.clearance_m == best.clearance_m for m in matches):
        return CellMatch(best.cell)  # the unknown fact does not change the requirement
    return best


def building_cell(p: SegmentProfile, path: Path = HORIZONTAL_TABLE) -> CellMatch | None:
    """The Table 4.1.9 building row cell for a pipe, None when the table has none for its class."""
    return horizontal_cell(BUILDING, p, path)


def vertical_cell(a: SegmentProfile, b: SegmentProfile, path: Path = VERTICAL_TABLE) -> CellMatch | None:
    """The Table 4.1.14 cell for two crossing segments, None when the table has no requirement."""
    if a.vertical is None or b.vertical is None:
        return None
    cell = _vertical_index(path).get((a.vertical, b.vertical))
    return CellMatch(cell) if cell else None


def largest_building_clearance(path: Path = HORIZONTAL_TABLE) -> float:
    """The largest building-row value of Table 4.1.9 (m): how far a structure check must look."""
    return max(c.clearance_m for c in load_horizontal_table(path) if "building" in (c.class_a, c.class_b))


def largest_pipe_clearance(path: Path = HORIZONTAL_TABLE) -> float:
    """The largest pipe-to-pipe value of Table 4.1.9 (m)."""
    return max(c.clearance_m for c in load_horizontal_table(path) if "building" not in (c.class_a, c.class_b))
