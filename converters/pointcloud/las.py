"""Open a LAS/LAZ file: check its header, read its facts, resolve its CRS and its heights.

Every refusal is an :class:`~cim.errors.InvalidInputError` naming the file and saying what is wrong (empty,
not a LAS file, unsupported version, impossible point format, truncated, no CRS, ...), before anything is
converted or stored.

Heights (``resolve_crs``): 3D Tiles places points by ellipsoidal height, so

* a compound CRS (``NAD83 / Oregon LCC (m) + NAVD88 height (ftUS)``) gives the vertical datum and unit: Z
  are gravity-related (orthometric/normal) heights, converted to metres and raised by the geoid
  undulation (the deployment's geoid model, EGM96 by default) exactly like the store's 1985 heights;
* a 3D CRS whose third axis is an ellipsoidal height takes Z as ellipsoidal (no geoid);
* a horizontal CRS alone: Z are taken as gravity-related heights in the horizontal CRS's linear unit
  (international feet for ``autzen_trim``; metres for a geographic CRS) — for a CGCS2000 file the 1985
  national heights.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from cim.crs import get_crs
from cim.errors import CRSError, CRSMissingError, InvalidInputError

#: Bytes of the fixed point record of each LAS point data record format.
POINT_SIZES = {0: 20, 1: 28, 2: 26, 3: 34, 4: 57, 5: 63, 6: 30, 7: 36, 8: 38, 9: 59, 10: 67}
#: Degrees of latitude in a metre, near enough to size a grid.
DEGREES_PER_METRE = 1.0 / 111_320.0
GPS_EPOCH = datetime(1980, 1, 6, tzinfo=UTC)


@dataclass(frozen=True)
class LasFacts:
    """What a LAS/LAZ header says."""

    path: Path
    version: str
    point_format: int
    point_count: int
    record_length: int
    compressed: bool
    copc: bool
    scales: tuple[float, float, float]
    offsets: tuple[float, float, float]
    mins: tuple[float, float, float]
    maxs: tuple[float, float, float]
    dimensions: tuple[str, ...]
    extra_dimensions: tuple[str, ...]
    creation_date: date | None
    adjusted_gps_time: bool
    crs: CRS | None
    software: str = ""
    system: str = ""

    @property
    def has_rgb(self) -> bool:
        return {"red", "green", "blue"} <= set(self.dimensions)

    @property
    def has_gps_time(self) -> bool:
        return "gps_time" in self.dimensions

    def as_metadata(self) -> dict[str, Any]:
        return {
            "las_version": self.version, "point_format": self.point_format, "point_count": self.point_count,
            "compressed": self.compressed, "copc": self.copc, "scales": list(self.scales),
            "offsets": list(self.offsets), "has_rgb": self.has_rgb, "has_intensity": True,
            "has_gps_time": self.has_gps_time, "extra_dimensions": list(self.extra_dimensions),
            "header_date": self.creation_date.isoformat() if self.creation_date else None,
            "software": self.software or None, "system": self.system or None,
        }


@dataclass(frozen=True)
class ResolvedCRS:
    """The CRS a cloud is read in: the horizontal CRS of X/Y and how Z become metres and ellipsoidal."""

    crs: CRS  # as given or read (maybe compound)
    horizontal: CRS
    z_to_metres: float
    ellipsoidal: bool
    vertical_name: str | None
    units_per_metre: float
    source: str  # "file" or "given"
    notes: list[str] = field(default_factory=list)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "crs_name": self.crs.name, "crs_wkt": self.crs.to_wkt(), "crs_source": self.source,
            "horizontal_crs": self.horizontal.name,
            "heights": {
                "vertical_crs": self.vertical_name, "z_to_metres": self.z_to_metres,
                "reference": "ellipsoidal" if self.ellipsoidal else "gravity-related (geoid undulation added)",
            },
            "crs_notes": self.notes,
        }


def _fail(path: Path, message: str) -> InvalidInputError:
    return InvalidInputError(message, file=path.name)


def _raw_header(path: Path) -> dict[str, Any]:
    """The fixed LAS header fields, read with struct (before laspy, so bad files get precise messages)."""
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "the file is empty (0 bytes): not a LAS/LAZ file")
    with open(path, "rb") as fh:
        head = fh.read(375)
    if head[:4] != b"LASF":
        raise _fail(path, f"not a LAS/LAZ file: it starts with {head[:4]!r}, a LAS file with b'LASF'")
    if len(head) < 227:
        raise _fail(path, f"the file is truncated: {len(head)} bytes, shorter than a LAS header (227)")
    major, minor = head[24], head[25]
    if major != 1 or minor > 4:
        raise _fail(path, f"LAS version {major}.{minor} is not supported (1.0–1.4)")
    header_size, offset_points, _nvlr, pdrf, rec_len, legacy_count = struct.unpack_from("<HIIBHI", head, 94)
    count = legacy_count
    if minor >= 4 and len(head) >= 255:
        count = struct.unpack_from("<Q", head, 247)[0] or legacy_count
    fmt = pdrf & 0x3F
    compressed = bool(pdrf & 0x80)
    _check_format(path, fmt, major, minor, rec_len)
    if header_size < 227 or offset_points < header_size or offset_points > size:
        raise _fail(path, f"the header is corrupt: header size {header_size}, point data at byte {offset_points} "
                          f"of a {size}-byte file")
    _check_numbers(path, head, count)
    _check_size(path, size, offset_points, count, rec_len, compressed)
    day, year = struct.unpack_from("<HH", head, 90)
    return {"version": f"{major}.{minor}", "format": fmt, "count": count, "record_length": rec_len,
            "compressed": compressed, "day": day, "year": year,
            "software": head[58:90].split(b"\0")[0].decode("ascii", "replace").strip(),
            "system": head[26:58].split(b"\0")[0].decode("ascii", "replace").strip(),
            "adjusted_gps": bool(struct.unpack_from("<H", head, 6)[0] & 1)}


def _check_format(path: Path, fmt: int, major: int, minor: int, rec_len: int) -> None:
    if fmt not in POINT_SIZES:
        raise _fail(path, f"point data record format {fmt} does not exist (LAS 1.4 defines 0–10)")
    if fmt >= 6 and minor < 4:
        raise _fail(path, f"point data record format {fmt} needs LAS 1.4, the header says {major}.{minor}")
    if fmt in (4, 5) and minor < 3:
        raise _fail(path, f"point data record format {fmt} needs LAS 1.3, the header says {major}.{minor}")
    if rec_len < POINT_SIZES[fmt]:
        raise _fail(path, f"point records of {rec_len} bytes are shorter than format {fmt} needs "
                          f"({POINT_SIZES[fmt]} bytes): the header is corrupt")


def _check_numbers(path: Path, head: bytes, count: int) -> None:
    scales = struct.unpack_from("<3d", head, 131)
    offsets = struct.unpack_from("<3d", head, 155)
    mx = struct.unpack_from("<6d", head, 179)  # max x, min x, max y, min y, max z, min z
    if not all(np.isfinite(scales)) or min(scales) <= 0:
        raise _fail(path, f"the header's scale factors {scales} are not positive numbers")
    if not all(np.isfinite(offsets)) or not all(np.isfinite(mx)):
        raise _fail(path, "the header's offsets or bounds are not finite numbers")
    if count == 0:
        raise _fail(path, "the file holds no points")
    if mx[0] < mx[1] or mx[2] < mx[3] or mx[4] < mx[5]:
        raise _fail(path, f"the header's bounds are inverted (x {mx[1]}..{mx[0]}, y {mx[3]}..{mx[2]}, "
                          f"z {mx[5]}..{mx[4]})")


def _check_size(path: Path, size: int, offset_points: int, count: int, rec_len: int, compressed: bool) -> None:
    if not compressed and offset_points + count * rec_len > size:
        raise _fail(path, f"the file is truncated: the header promises {count:,} points "
                          f"({offset_points + count * rec_len:,} bytes) but the file has {size:,} bytes")
    if compressed:
        with open(path, "rb") as fh:
            fh.seek(offset_points)
            raw = fh.read(8)
        table = struct.unpack("<q", raw)[0] if len(raw) == 8 else -1
        if table != -1 and (table > size or table < offset_points):
            raise _fail(path, f"the compressed point data are truncated: the chunk table should start at byte "
                              f"{table:,} of a {size:,}-byte file")


def open_las(path: str | Path) -> LasFacts:
    """Check ``path`` and read its header facts (no point is read).

    Raises:
        InvalidInputError: missing, empty, not LAS, unsupported version, impossible point format, truncated
            or corrupt header — the message names the file and the problem.
    """
    import laspy

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no such file: {path}", file=path.name)
    raw = _raw_header(path)
    try:
        with laspy.open(str(path)) as reader:
            h = reader.header
            dims = tuple(h.point_format.dimension_names)
            extra = tuple(h.point_format.extra_dimension_names)
            copc = any(getattr(v, "user_id", "") == "copc" for v in h.vlrs)
            try:
                crs = h.parse_crs()
            except Exception as exc:  # noqa: BLE001 - laspy/pyproj raise many types for bad CRS records
                raise _fail(path, f"the file's CRS record cannot be read: {exc}") from None
    except InvalidInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - laspy raises many types for corrupt headers and VLRs
        raise _fail(path, f"the LAS header or its variable-length records are corrupt: {exc}") from None
    created = None
    if raw["year"] >= 1980 and 1 <= raw["day"] <= 366:
        created = date(raw["year"], 1, 1) + timedelta(days=raw["day"] - 1)
    return LasFacts(
        path=path, version=raw["version"], point_format=raw["format"], point_count=int(raw["count"]),
        record_length=raw["record_length"], compressed=raw["compressed"], copc=copc,
        scales=tuple(float(v) for v in h.scales), offsets=tuple(float(v) for v in h.offsets),  # type: ignore[arg-type]
        mins=tuple(float(v) for v in h.mins), maxs=tuple(float(v) for v in h.maxs),  # type: ignore[arg-type]
        dimensions=dims, extra_dimensions=extra, creation_date=created, adjusted_gps_time=raw["adjusted_gps"],
        crs=crs, software=raw["software"], system=raw["system"],
    )


def _linear_factor(crs: CRS) -> float:
    for axis in crs.axis_info[:2]:
        if axis.unit_name not in ("degree", "radian", "grad") and axis.unit_conversion_factor:
            return float(axis.unit_conversion_factor)
    return 1.0


def resolve_crs(facts: LasFacts, given: str | None = None) -> ResolvedCRS:
    """The CRS to read ``facts.path`` in: ``given`` when set (it wins over the file's), else the file's.

    Raises:
        CRSMissingError: the file has no CRS and none is given.
        CRSError: the CRS is not a geographic or projected one (or a compound of one).
    """
    notes: list[str] = []
    if given:
        try:
            crs = get_crs(given)
        except CRSError as exc:
            raise CRSError(str(exc), file=facts.path.name, field="crs") from None
        source = "given"
        if facts.crs is not None and not facts.crs.equals(crs, ignore_axis_order=True):
            notes.append(f"the file says {facts.crs.name}; the given {crs.name} was used")
    elif facts.crs is not None:
        crs, source = facts.crs, "file"
    else:
        raise CRSMissingError(
            f"{facts.path.name} carries no CRS (neither a WKT nor a GeoTIFF-keys record): give the CRS of its "
            "coordinates, e.g. --crs EPSG:4548 (CGCS2000 / 3-degree GK CM 117E) or EPSG:4548+5737 with 1985 heights",
            file=facts.path.name, field="crs")
    vertical_name = None
    ellipsoidal = False
    if crs.is_compound:
        horizontal, vertical = crs.sub_crs_list[0], crs.sub_crs_list[1]
        z_to_m = float(vertical.axis_info[0].unit_conversion_factor or 1.0)
        vertical_name = vertical.name
    else:
        horizontal = crs
        third = crs.axis_info[2] if len(crs.axis_info) >= 3 else None
        if third is not None and "ellipsoidal" in third.name.lower():
            ellipsoidal = True
            z_to_m = float(third.unit_conversion_factor or 1.0)
            vertical_name = "ellipsoidal height"
            horizontal = crs.to_2d()
        else:
            z_to_m = _linear_factor(crs) if crs.is_projected else 1.0
            if z_to_m != 1.0:
                notes.append(f"no vertical CRS: Z taken in the horizontal unit ({crs.axis_info[0].unit_name})")
    if not (horizontal.is_projected or horizontal.is_geographic) or horizontal.is_geocentric:
        raise CRSError(f"{crs.name} is not a geographic or projected CRS: point clouds in {horizontal.type_name} "
                       "coordinates are not supported", file=facts.path.name, field="crs")
    upm = DEGREES_PER_METRE if horizontal.is_geographic else 1.0 / _linear_factor(horizontal)
    return ResolvedCRS(crs, horizontal, z_to_m, ellipsoidal, vertical_name, upm, source, notes)


def gps_date(seconds: float, adjusted: bool) -> date | None:
    """The date of a GPS time stamp: adjusted standard GPS time (global encoding bit 0) is GPS seconds
    minus 10⁹; GPS week time carries no date (``None``)."""
    if not adjusted or not np.isfinite(seconds):
        return None
    return (GPS_EPOCH + timedelta(seconds=float(seconds) + 1e9)).date()
