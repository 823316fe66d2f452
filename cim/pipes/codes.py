"""CJJ 61-2017 Appendix F 8-digit pipe feature codes: parse, build and check against attributes.

Layout: national basic-geographic digit (``5`` = pipelines) + category digit (1-8) + 2-digit
sub-type + element type (1 line, 2 point, 3 polygon) + point type (1 feature point 特征点,
2 appurtenance 附属物, 0 lines/polygons) + 2-digit sequence. Example: 雨水检修井 ``52012202``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cim.pipes.dictionaries import (
    APPURTENANCE,
    CATEGORIES,
    CATEGORY_BY_DIGIT,
    FEATURE,
    SUBTYPES,
    point_sequence,
    resolve_point_type,
)

NATIONAL_DIGIT = "5"

ELEMENT_DIGITS: dict[str, int] = {"line": 1, "point": 2, "polygon": 3}
POINT_KIND_DIGITS: dict[str, int] = {FEATURE: 1, APPURTENANCE: 2}

_CODE = re.compile(r"^(\d)(\d)(\d\d)(\d)(\d)(\d\d)(?:\.0+)?$")


@dataclass(frozen=True)
class FeatureCode:
    """The six parts of an Appendix F code, as written (parsing does not validate values)."""

    national: str
    major_digit: int
    subtype: str
    element: int
    point_type: int
    sequence: str

    @property
    def major(self) -> str | None:
        """Category code of the category digit (``PS`` for 2), None when the digit is not 1-8."""
        cat = CATEGORY_BY_DIGIT.get(self.major_digit)
        return cat.code if cat else None

    def __str__(self) -> str:
        return f"{self.national}{self.major_digit}{self.subtype}{self.element}{self.point_type}{self.sequence}"


def parse_code(text: str | int | None) -> FeatureCode | None:
    """Split an 8-digit code (``'52011000'``; a spreadsheet's ``'52011000.0'`` too); None if malformed."""
    if text is None:
        return None
    m = _CODE.match(str(text).strip())
    if m is None:
        return None
    national, major, subtype, element, point, seq = m.groups()
    return FeatureCode(national, int(major), subtype, int(element), int(point), seq)


def _element_digit(element: str | int) -> int:
    if isinstance(element, int):
        if element not in ELEMENT_DIGITS.values():
            raise ValueError(f"element type must be 1, 2 or 3, got {element}")
        return element
    try:
        return ELEMENT_DIGITS[element]
    except KeyError:
        raise ValueError(f"element must be one of {sorted(ELEMENT_DIGITS)}, got {element!r}") from None


def build_code(
    major: str,
    subtype: str | None,
    element: str | int,
    point_kind: str | None = None,
    sequence: int | str = 0,
) -> str:
    """The Appendix F code for a category, sub-type, element and point kind.

    ``element`` is ``line``/``point``/``polygon`` (or 1/2/3); ``point_kind`` is ``feature`` or
    ``appurtenance`` for points and ignored otherwise; an unknown sub-type (None) is written ``00``.
    Raises ``ValueError`` for unknown or inconsistent inputs.
    """
    cat = CATEGORIES.get(major.upper())
    if cat is None:
        raise ValueError(f"unknown pipe category {major!r}")
    digits = "00"
    if subtype is not None:
        sub = SUBTYPES.get(subtype.upper())
        if sub is None or sub.major != cat.code:
            raise ValueError(f"{subtype!r} is not a sub-type of {cat.code}")
        digits = sub.digits
    elem = _element_digit(element)
    point = 0
    if elem == ELEMENT_DIGITS["point"]:
        if point_kind not in POINT_KIND_DIGITS:
            raise ValueError(f"a point needs point_kind 'feature' or 'appurtenance', got {point_kind!r}")
        point = POINT_KIND_DIGITS[point_kind]
    seq = int(sequence)
    if not 0 <= seq <= 99:
        raise ValueError(f"sequence must be 0-99, got {sequence!r}")
    return f"{NATIONAL_DIGIT}{cat.digit}{digits}{elem}{point}{seq:02d}"


def _category_problems(fc: FeatureCode, major: str | None, subtype: str | None) -> list[str]:
    cat = CATEGORIES.get(major.upper()) if major else None
    if cat is None:  # unknown category: reported by the dictionary check, not here
        return []
    if fc.major_digit != cat.digit:
        got = fc.major or "no category"
        return [f"category digit {fc.major_digit} ({got}) does not match category {cat.code} ({cat.digit})"]
    sub = SUBTYPES.get(subtype.upper()) if subtype else None
    if sub is not None and sub.major == cat.code:
        if fc.subtype != sub.digits:
            return [f"sub-type digits {fc.subtype} do not match sub-type {sub.code} ({sub.digits})"]
        return []
    known = {s.digits for s in SUBTYPES.values() if s.major == cat.code}
    if fc.subtype not in known:
        return [f"sub-type digits {fc.subtype} are not defined for category {cat.code}"]
    return []


def _point_problems(fc: FeatureCode, point_kind: str | None, point_type_name: str | None) -> list[str]:
    ptype = resolve_point_type(point_type_name) if point_type_name else None
    kind = point_kind or (ptype.kind if ptype else None)
    if kind is None:
        if fc.point_type not in POINT_KIND_DIGITS.values():
            return [f"point-type digit {fc.point_type} is not 1 (feature) or 2 (appurtenance)"]
        return []
    want = POINT_KIND_DIGITS.get(kind)
    if want is None:
        raise ValueError(f"point_kind must be 'feature' or 'appurtenance', got {point_kind!r}")
    if fc.point_type != want:
        return [f"point-type digit {fc.point_type} does not match {kind} ({want})"]
    return []


def check_code(
    code: str | FeatureCode | None,
    *,
    major: str | None,
    subtype: str | None,
    element: str | int,
    point_kind: str | None = None,
    point_type_name: str | None = None,
) -> list[str]:
    """Problems (human-readable, empty when consistent) of a feature code against a record's attributes.

    Checks the national digit, category digit vs ``major``, sub-type digits vs ``subtype`` (or, with
    no sub-type, that the digits exist for the major), element type, point-type digit vs
    ``point_kind`` (derived from ``point_type_name`` when not given; must be 0 for lines/polygons)
    and, only where :data:`~cim.pipes.dictionaries.POINT_SEQUENCES` knows the pair (sub-type, point
    type), the sequence. Unknown categories skip the category checks. A missing code is a problem.
    """
    if code is None or (isinstance(code, str) and not code.strip()):
        return ["feature code is missing"]
    fc = code if isinstance(code, FeatureCode) else parse_code(code)
    if fc is None:
        return [f"{code!r} is not an 8-digit feature code"]
    problems: list[str] = []
    if fc.national != NATIONAL_DIGIT:
        problems.append(f"national digit is {fc.national}, expected {NATIONAL_DIGIT} (pipelines)")
    problems += _category_problems(fc, major, subtype)
    elem = _element_digit(element)
    if fc.element != elem:
        problems.append(f"element digit {fc.element} does not match element type {elem} (1 line, 2 point, 3 polygon)")
    if elem != ELEMENT_DIGITS["point"]:
        if fc.point_type != 0:
            problems.append(f"point-type digit {fc.point_type} should be 0 for a non-point element")
        return problems
    problems += _point_problems(fc, point_kind, point_type_name)
    seq = point_sequence(subtype, point_type_name)
    if seq is not None and fc.sequence != seq:
        problems.append(f"sequence {fc.sequence} does not match {point_type_name} ({seq})")
    return problems
