"""Pipe cross-sections from delivered size text: ``DN300``, ``Φ300``, ``800×600``, ``B×H=0.8×0.6``...

Sizes are millimetres. Values are taken as metres when a ``m`` unit is written, or when every
number is below 10 (``0.3``, ``0.8×0.6``, ``2×1.5``): no real pipe is under 10 mm, and culverts
are often written in metres. ``cm`` is honoured. Rectangles are width × height.

Multi-hole duct banks and bundles (``4孔``, ``3×Φ100``, ``2×300``) give None: the hole layout
(one row or a grid, spacing, casing) is not in the text, so no envelope can be derived honestly;
callers fall back to a default or the hole count. ``Φ325×8`` (outer diameter × wall) is circular.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

CIRCULAR = "circular"
RECT = "rect"


@dataclass(frozen=True)
class Section:
    """A circular (``diameter_mm``) or rectangular (``width_mm`` × ``height_mm``) section."""

    shape: str
    diameter_mm: float | None = None
    width_mm: float | None = None
    height_mm: float | None = None


_NUM = r"(\d+(?:\.\d*)?|\.\d+)"
_ROUND_PREFIX = re.compile(r"^(?:dn|de|d|φ|ø|∅|ф)[=:]?")
_RECT_PREFIX = re.compile(r"^(?:[bw][x*]h|宽[x*]高)[=:]")
_UNIT = re.compile(r"(mm|cm|m)$")
_ONE = re.compile(rf"^{_NUM}$")
_TWO = re.compile(rf"^{_NUM}[x*]{_NUM}$")
_UNIT_SCALE = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def _clean(text: str) -> str:
    """NFKC (full-width ＊, ＤＮ, ϕ), lower case, no whitespace, one ``x`` for every times sign."""
    s = unicodedata.normalize("NFKC", text).lower()
    s = re.sub(r"\s+", "", s)
    return re.sub(r"[×✕✖╳]", "x", s).replace("：", ":")


def _scale(values: tuple[float, ...], unit: str | None) -> tuple[float, ...] | None:
    if any(v <= 0 for v in values):
        return None
    if unit is not None:
        factor = _UNIT_SCALE[unit]
    elif max(values) < 10:
        factor = 1000.0
    elif min(values) < 10:  # 2×300: two pipes, not a 2 mm wide box
        return None
    else:
        factor = 1.0
    return tuple(round(v * factor, 6) for v in values)


@lru_cache(maxsize=65536)
def parse_size(text: str | None) -> Section | None:
    """The section described by a 管径/断面尺寸 value, or None when empty or not understood."""
    if text is None:
        return None
    s = _clean(str(text))
    if not s:
        return None
    s, round_prefix = _ROUND_PREFIX.subn("", s, count=1)
    if not round_prefix:
        s = _RECT_PREFIX.sub("", s, count=1)
    unit_match = _UNIT.search(s)
    unit = unit_match.group(1) if unit_match else None
    if unit:
        s = s[: -len(unit)]
    if m := _ONE.match(s):
        values = _scale((float(m.group(1)),), unit)
        return Section(CIRCULAR, diameter_mm=values[0]) if values else None
    if m := _TWO.match(s):
        a, b = float(m.group(1)), float(m.group(2))
        if round_prefix:  # Φ325×8: outer diameter × wall thickness
            values = _scale((a,), unit) if b < a / 2 else None
            return Section(CIRCULAR, diameter_mm=values[0]) if values else None
        values = _scale((a, b), unit)
        return Section(RECT, width_mm=values[0], height_mm=values[1]) if values else None
    return None


def section_height_mm(section: Section | None) -> float | None:
    """Vertical extent: the diameter of a circle, the height of a rectangle."""
    if section is None:
        return None
    return section.diameter_mm if section.shape == CIRCULAR else section.height_mm


def section_width_mm(section: Section | None) -> float | None:
    """Horizontal extent: the diameter of a circle, the width of a rectangle."""
    if section is None:
        return None
    return section.diameter_mm if section.shape == CIRCULAR else section.width_mm
