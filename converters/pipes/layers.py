"""Tell point tables from line tables, and read the category hinted by a layer name."""

from __future__ import annotations

import re

from cim.errors import InvalidInputError
from cim.pipes.fields import FieldMapping, map_columns

#: Trailing words that decorate a table name without changing its meaning (管线点成果表, JSPOINT_TABLE).
_DECORATION = re.compile(
    r"(?:成果表|成果|数据表|数据|图层|表|层|[_\-\s]*(?:TABLE|LAYER|TAB))+$", re.IGNORECASE
)
_SUFFIXES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("point", re.compile(r"^(?P<pre>.*?)(?:POINTS?|[_\-\s]P|管线点|管点|点位|点)$", re.IGNORECASE)),
    ("line", re.compile(r"^(?P<pre>.*?)(?:LINES?|[_\-\s]L|管线段|管段|线段|管线|线)$", re.IGNORECASE)),
)
#: Prefixes that name no category ("PIPE_POINT", "管线点").
_GENERIC = re.compile(r"(?:管线|管道|管|PIPES?|GX)$", re.IGNORECASE)
_SEPARATORS = "_- \t."


def _split(layer: str) -> tuple[str, str] | None:
    """(kind, text before the kind suffix) from a layer name, or None when it names no kind."""
    name = _DECORATION.sub("", layer.strip()) or layer.strip()
    for kind, pattern in _SUFFIXES:
        match = pattern.match(name)
        if match:
            return kind, match.group("pre")
    return None


def detect_kind(layer: str, columns: list[str], mapping: FieldMapping, *, file: str | None = None) -> str:
    """'point' or 'line': by layer name (JSPOINT, YS_LINE, 给水点, 管线段表), else by the mapped columns."""
    split = _split(layer)
    if split:
        return split[0]
    line_fields = set(map_columns(columns, "line", mapping).values())
    if {"start_id", "end_id"} <= line_fields:
        return "line"
    point_fields = set(map_columns(columns, "point", mapping).values())
    if {"x", "y"} <= point_fields or "point_id" in point_fields:
        return "point"
    raise InvalidInputError(
        f"cannot tell whether layer {layer!r} holds pipe points or lines: its name has no POINT/LINE/点/线 "
        "suffix and no columns map to 起点点号+终点点号 (lines) or 物探点号/X+Y (points); "
        "rename the layer or add the column names to a mapping file",
        file=file,
    )


def category_hint(layer: str) -> str | None:
    """The category text before the kind suffix ('JSPOINT' -> 'JS', '给水点' -> '给水'); None if absent."""
    split = _split(layer)
    if split is None:
        return None
    prefix = split[1].strip(_SEPARATORS)
    prefix = _GENERIC.sub("", prefix).strip(_SEPARATORS)
    return prefix or None
