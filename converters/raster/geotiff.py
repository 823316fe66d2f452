"""Open a GeoTIFF, read the facts the catalogue keeps and refuse what cannot be served.

Refused with one clear message each: missing, empty or truncated files, files that are not TIFFs, rasters
without a CRS (unless one is given) or without a geotransform, rotated grids, and band layouts that are
neither a DEM (one numeric band) nor an orthophoto (3 or 4 ``uint8`` bands).

Example::

    facts = read_facts(Path("dem.tif"))
    facts.role_guess()  # -> "dem"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cim.errors import CRSError, CRSMissingError, InvalidInputError, UnsupportedError

#: TIFF and BigTIFF magic numbers (little and big endian).
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
ROLES = ("dem", "dom")
NUMERIC = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")


@dataclass(frozen=True)
class RasterFacts:
    """What a GeoTIFF is: size, bands, grid, CRS (WKT and EPSG), nodata, compression, COG layout."""

    path: Path
    width: int
    height: int
    count: int
    dtypes: tuple[str, ...]
    crs_wkt: str
    epsg: int | None
    vertical_epsg: int | None
    transform: tuple[float, ...]
    bounds: tuple[float, float, float, float]
    res: tuple[float, float]
    nodata: float | None
    compression: str | None
    is_cog: bool
    overviews: tuple[int, ...]
    colorinterp: tuple[str, ...]
    crs_given: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def crs_name(self) -> str:
        """``EPSG:n`` when the CRS has a code, else the WKT."""
        return f"EPSG:{self.epsg}" if self.epsg else self.crs_wkt

    def role_guess(self) -> str | None:
        """``dem`` for one numeric band, ``dom`` for 3 or 4 ``uint8`` bands, else None."""
        if self.count == 1 and self.dtypes[0] in NUMERIC:
            return "dem"
        if self.count in (3, 4) and all(d == "uint8" for d in self.dtypes):
            return "dom"
        return None

    def as_metadata(self) -> dict[str, Any]:
        """The facts as JSON-ready catalogue metadata."""
        return {"width": self.width, "height": self.height, "bands": self.count, "dtype": self.dtypes[0],
                "crs": self.crs_name, "epsg": self.epsg, "transform": list(self.transform),
                "resolution": list(self.res), "nodata": self.nodata, "compression": self.compression,
                "overviews": list(self.overviews), "colorinterp": list(self.colorinterp)}


def check_file(path: Path) -> None:
    """Refuse missing, empty and non-TIFF files before GDAL sees them."""
    if not path.exists():
        raise InvalidInputError("does not exist", file=str(path))
    if not path.is_file():
        raise InvalidInputError("is not a file", file=str(path))
    size = path.stat().st_size
    if size == 0:
        raise InvalidInputError("is empty (0 bytes)", file=str(path))
    with path.open("rb") as fh:
        head = fh.read(8)
    if head[:4] not in TIFF_MAGIC:
        raise InvalidInputError(f"is not a GeoTIFF: it starts with {head[:4]!r}, not a TIFF signature "
                                "(II*\\0 or MM\\0*)", file=str(path))
    if size < 16:
        raise InvalidInputError(f"is truncated: {size} bytes is not even a TIFF header", file=str(path))


def _is_cog(src: Any) -> bool:
    """GDAL's ``LAYOUT=COG`` marker, else tiled with overviews (or small enough to need none)."""
    if src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT", "").upper() == "COG":
        return True
    if src.driver != "GTiff" or not src.profile.get("tiled"):
        return False
    bw, bh = src.block_shapes[0]
    return bool(src.overviews(1)) or (src.width <= bw and src.height <= bh)


def _crs(src: Any, path: Path, crs: str | None) -> tuple[str, int | None, int | None, bool]:
    """WKT, horizontal EPSG, vertical EPSG of the file's CRS or the one given."""
    from pyproj import CRS

    given = crs is not None
    if src.crs is None and not given:
        raise CRSMissingError("the raster has no CRS: give one (--crs EPSG:4548) or write it into the file "
                              "(gdal_edit.py -a_srs EPSG:4548)", file=str(path))
    try:
        file_crs = CRS.from_wkt(src.crs.to_wkt()) if src.crs is not None else None
        chosen = CRS.from_user_input(crs) if given else file_crs
    except Exception as exc:  # noqa: BLE001 - pyproj raises several types for bad input
        raise CRSError(f"unknown CRS {crs!r}: {exc}", file=str(path), field="crs") from None
    assert chosen is not None
    horizontal, vertical = chosen, None
    if chosen.is_compound:
        horizontal, vertical = chosen.sub_crs_list[0], chosen.sub_crs_list[1]
    if file_crs is not None and given:
        fh = file_crs.sub_crs_list[0] if file_crs.is_compound else file_crs
        if not fh.equals(horizontal, ignore_axis_order=True):
            raise CRSError(f"the file says {fh.name} but {crs} was given: remove --crs or fix the file",
                           file=str(path), field="crs")
    if not (horizontal.is_projected or horizontal.is_geographic):
        raise CRSError(f"{horizontal.name} is not a projected or geographic CRS", file=str(path), field="crs")
    v_epsg = vertical.to_epsg() if vertical is not None else None
    return horizontal.to_wkt(), horizontal.to_epsg(), v_epsg, given


def read_facts(path: str | Path, crs: str | None = None) -> RasterFacts:
    """Open ``path`` and return its :class:`RasterFacts`; ``crs`` replaces a missing CRS (must agree with one
    in the file). Raises :class:`InvalidInputError` (or a subclass) for anything unusable."""
    import rasterio
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    path = Path(path)
    check_file(path)
    try:
        with rasterio.open(path) as src:
            if src.driver != "GTiff" and src.driver != "COG":
                raise UnsupportedError(f"{path.name}: GDAL reads it as {src.driver}, not as a GeoTIFF")
            wkt, epsg, v_epsg, given = _crs(src, path, crs)
            t = src.transform
            if t.is_identity or src.crs is None and not given:
                raise InvalidInputError("the raster has no geotransform (pixel grid not placed on the earth)",
                                        file=str(path))
            if t.b != 0 or t.d != 0:
                raise UnsupportedError(f"{path.name}: rotated or sheared pixel grids are not supported; "
                                       "warp it to a north-up grid first (gdalwarp)")
            facts = RasterFacts(
                path=path, width=src.width, height=src.height, count=src.count, dtypes=tuple(src.dtypes),
                crs_wkt=wkt, epsg=epsg, vertical_epsg=v_epsg, transform=tuple(t)[:6],
                bounds=tuple(src.bounds), res=(abs(t.a), abs(t.e)),
                nodata=None if src.nodata is None else float(src.nodata),
                compression=src.compression.value.lower() if src.compression else None, is_cog=_is_cog(src),
                overviews=tuple(src.overviews(1)), colorinterp=tuple(c.name for c in src.colorinterp),
                crs_given=given)
            _probe(src, path)
    except (RasterioError, CPLE_BaseError) as exc:  # GDAL's own errors escape rasterio's hierarchy at times
        raise InvalidInputError(f"is not a readable GeoTIFF (truncated or corrupt?): {exc}", file=str(path)) from None
    if facts.width < 2 or facts.height < 2:
        raise InvalidInputError(f"a {facts.width}×{facts.height} raster is too small to serve", file=str(path))
    return facts


def _probe(src: Any, path: Path) -> None:
    """Read the last row of blocks: a truncated file fails here rather than half-way through a copy."""
    from rasterio.windows import Window

    bh = src.block_shapes[0][0]
    row = max(src.height - bh, 0)
    try:
        src.read(window=Window(0, row, src.width, src.height - row))
    except Exception as exc:  # noqa: BLE001 - GDAL reports truncation as several error types
        raise InvalidInputError(f"is truncated or corrupt: reading its last rows failed ({exc})",
                                file=str(path)) from None


def choose_role(facts: RasterFacts, role: str | None) -> str:
    """The role given (checked against the bands) or the one the bands imply."""
    guess = facts.role_guess()
    if role is None:
        if guess is None:
            raise InvalidInputError(f"{facts.count} band(s) of {'/'.join(sorted(set(facts.dtypes)))}: neither a "
                                    "DEM (one numeric band) nor an orthophoto (3 or 4 uint8 bands)",
                                    file=str(facts.path), field="role")
        return guess
    if role not in ROLES:
        raise InvalidInputError(f"role {role!r} is not one of {ROLES}", field="role")
    if role == "dem" and (facts.count != 1 or facts.dtypes[0] not in NUMERIC):
        raise InvalidInputError(f"a DEM needs one numeric band; the file has {facts.count}", file=str(facts.path),
                                field="role")
    if role == "dom" and not (facts.count in (1, 3, 4) and all(d == "uint8" for d in facts.dtypes)):
        raise InvalidInputError(f"an orthophoto needs 1, 3 or 4 uint8 bands; the file has {facts.count} of "
                                f"{'/'.join(sorted(set(facts.dtypes)))}", file=str(facts.path), field="role")
    return role


def dem_range(path: Path, nodata: float | None) -> tuple[float, float, int]:
    """Minimum, maximum and count of valid DEM cells (the whole band is read)."""
    import rasterio

    with rasterio.open(path) as src:
        band = src.read(1, masked=True)
    data = np.ma.filled(band.astype("f8"), np.nan)
    if nodata is not None:
        data[data == nodata] = np.nan
    valid = np.isfinite(data)
    if not valid.any():
        raise InvalidInputError("the DEM has no valid cells (all nodata)", file=str(path))
    return float(data[valid].min()), float(data[valid].max()), int(valid.sum())
