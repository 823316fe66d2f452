"""Georeference of a photogrammetry production: ContextCapture/Smart3D ``metadata.xml`` or given values.

``<SRS>`` is a WKT, ``EPSG:<code>`` (optionally ``+<vertical code>``) or ``ENU:<lat>,<lon>``; ``<SRSOrigin>``
(``x,y,z``, default ``0,0,0``) is added to every vertex. Producers often stamp a WKT with an EPSG code its
parameters contradict (a local central meridian labelled EPSG:4547): the parameters are what the model was
computed in, so every ``AUTHORITY`` clause is stripped and the CRS is built from the WKT itself.

The file is parsed with ``defusedxml`` (no entity expansion, no external entities).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from pyproj import CRS
from pyproj.exceptions import CRSError as ProjCRSError

from cim.errors import CRSError, CRSMissingError, InvalidInputError

_AUTHORITY = re.compile(r',\s*(?:AUTHORITY|ID)\[\s*"([^"]*)"\s*,\s*"?([^"\]]*)"?\s*\]', re.IGNORECASE)
_ENU = re.compile(r"^ENU\s*:\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Georef:
    """Where mesh vertices lie: ``vertex + origin`` is in ``crs`` (projected metres, normal heights), or,
    for an ENU production, in the east-north-up frame at ``enu`` (lat, lon; ellipsoid height 0)."""

    crs: CRS | None
    origin: tuple[float, float, float]
    enu: tuple[float, float] | None = None
    srs: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The SRS in one line for messages and the catalogue."""
        if self.enu is not None:
            return f"ENU:{self.enu[0]},{self.enu[1]}"
        assert self.crs is not None
        return self.crs.name


def _float_triple(text: str, *, file: str | None, field_name: str) -> tuple[float, float, float]:
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or not all(v == v and abs(v) != float("inf") for v in values):
        raise InvalidInputError(f"{text.strip()!r} is not 'x,y,z' (three numbers)", file=file, field=field_name)
    return (values[0], values[1], values[2] if len(values) == 3 else 0.0)


def crs_from_srs(text: str, *, file: str | None = None, field_name: str = "SRS") -> tuple[CRS | None,
                                                                                      tuple[float, float] | None,
                                                                                      list[str]]:
    """(projected CRS, None, notes) or (None, (lat, lon), notes) for an ENU SRS.

    Raises:
        CRSMissingError: empty text. CRSError: an SRS PROJ cannot read, or not projected in metres.
    """
    srs = (text or "").strip()
    notes: list[str] = []
    codes: list[tuple[str, str]] = []
    if not srs:
        raise CRSMissingError("the SRS is empty: the mesh has no georeference", file=file, field=field_name)
    enu = _ENU.match(srs)
    if enu:
        lat, lon = float(enu.group(1)), float(enu.group(2))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise CRSError(f"ENU origin {lat},{lon} is not a latitude,longitude", file=file, field=field_name)
        return None, (lat, lon), notes
    if srs.upper().startswith("EPSG:"):
        srs = srs.split("+", 1)[0]  # a compound "EPSG:4547+5737": heights are treated as normal heights anyway
        user = srs
    else:
        codes = _AUTHORITY.findall(srs)
        user = _AUTHORITY.sub("", srs)
        if codes:
            notes.append("AUTHORITY clauses stripped from the SRS WKT: the CRS is built from its parameters")
    try:
        crs = CRS.from_user_input(user)
    except ProjCRSError as exc:
        raise CRSError(f"SRS {text.strip()[:80]!r} cannot be read: {exc}", file=file, field=field_name) from None
    if crs.is_compound:
        crs = crs.sub_crs_list[0]
    if not crs.is_projected or not all(a.unit_name in ("metre", "meter") for a in crs.axis_info[:2]):
        raise CRSError(f"SRS {crs.name!r} is not a projected CRS in metres: mesh vertices are metres from "
                       "SRSOrigin, give a projected CRS or ENU:lat,lon", file=file, field=field_name)
    if codes:
        claimed = codes[-1]
        try:
            official = CRS.from_user_input(f"{claimed[0]}:{claimed[1]}")
            if official.is_projected and official.to_wkt() != crs.to_wkt() and not official.equals(crs,
                                                                                             ignore_axis_order=True):
                notes.append(f"the WKT is labelled {claimed[0]}:{claimed[1]} ({official.name}) but its parameters "
                             f"differ ({crs.name}): the parameters are used")
        except ProjCRSError:
            pass
    return crs, None, notes


def parse_metadata_xml(path: str | Path) -> Georef:
    """Read a ContextCapture ``metadata.xml``.

    Raises:
        InvalidInputError: not XML, or entity declarations (refused). CRSMissingError: no SRS.
        CRSError: an unreadable SRS.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise CRSMissingError("metadata.xml does not exist: the mesh has no georeference "
                              "(give --metadata, or --crs and --origin)", file=file)
    try:
        root = SafeET.fromstring(path.read_bytes(), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise InvalidInputError(f"refused: the XML declares a DTD or entities ({type(exc).__name__})",
                                file=file) from None
    except SafeET.ParseError as exc:
        raise InvalidInputError(f"not well-formed XML: {exc}", file=file) from None
    srs_el = root.find("SRS")
    if srs_el is None or not (srs_el.text or "").strip():
        raise CRSMissingError("no <SRS> element: the mesh has no georeference", file=file, field="SRS")
    crs, enu, notes = crs_from_srs(srs_el.text or "", file=file)
    origin_el = root.find("SRSOrigin")
    origin = (0.0, 0.0, 0.0)
    if origin_el is not None and (origin_el.text or "").strip():
        origin = _float_triple(origin_el.text or "", file=file, field_name="SRSOrigin")
    return Georef(crs, origin, enu, srs=(srs_el.text or "").strip(), source=file, notes=notes)


def georef_from_args(crs: str | None, origin: str | None) -> Georef:
    """A georeference given on the command line: ``crs`` (EPSG code, WKT or ``ENU:lat,lon``), ``origin``."""
    if not crs:
        raise CRSMissingError("no georeference: give --metadata metadata.xml, or --crs (and --origin x,y,z)",
                              field="crs")
    parsed, enu, notes = crs_from_srs(crs, field_name="crs")
    xyz = _float_triple(origin, file=None, field_name="origin") if origin else (0.0, 0.0, 0.0)
    return Georef(parsed, xyz, enu, srs=crs, source="--crs/--origin", notes=notes)
