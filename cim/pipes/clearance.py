"""GB 50289-2016 clearance tables, loaded from versioned data files with per-cell provenance."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).parent / "data"
VERTICAL_TABLE = DATA / "gb50289_2016_table_4_1_14.csv"

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


@dataclass(frozen=True)
class ClearanceCell:
    """One table cell: the pair, the clearance and where the value comes from."""

    class_a: str
    class_b: str
    clearance_m: float
    confidence: str
    source: str


@lru_cache(maxsize=4)
def load_table(path: Path = VERTICAL_TABLE) -> tuple[ClearanceCell, ...]:
    """Cells of a clearance table file (lines starting with '#' are comments), both orders."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    cells: dict[tuple[str, str], ClearanceCell] = {}
    for row in csv.DictReader(lines):
        cell = ClearanceCell(row["class_a"], row["class_b"], float(row["clearance_m"]), row["confidence"], row["source"])
        cells[(cell.class_a, cell.class_b)] = cell
        cells.setdefault(
            (cell.class_b, cell.class_a),
            ClearanceCell(cell.class_b, cell.class_a, cell.clearance_m, cell.confidence, cell.source),
        )
    return tuple(cells.values())
