"""Orthophotos (DOM rasters) as map tiles: XYZ PNG tiles, OGC WMTS 1.0.0 RESTful capabilities and TileJSON.

``GET /api/imagery/{id}/tiles/{z}/{x}/{y}.png``: a 256 × 256 WebMercatorQuad tile read by rio-tiler from the
catalogued Cloud-Optimized GeoTIFF, transparent outside the image (a fully transparent tile off it).
``GET /api/imagery/{id}/WMTSCapabilities.xml``: the same tiles for WMTS clients (QGIS, GDAL, OpenLayers).
``GET /api/imagery/{id}/tilejson.json``: TileJSON 2.2.0 for web maps and Cesium's URL template provider.
Authorised like every real-scene file (:func:`api.realscene.asset_row`); only rasters of role ``dom``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.realscene import asset_dir, asset_row
from cim.errors import NotFoundError
from cim.store.duckdb_ import json_value

TMS_ID = "WebMercatorQuad"
TILE = 256
MAX_ZOOM = 24
NS = {"": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1",
      "xlink": "http://www.w3.org/1999/xlink"}
CACHE = {"Cache-Control": "public, max-age=3600"}


def _dom(request: Request, dataset: str) -> tuple[dict[str, Any], Path]:
    """The authorised DOM row and its COG file."""
    row = asset_row(request, dataset, ("raster",))
    meta = json_value(row.get("metadata")) or {}
    if meta.get("role") != "dom":
        raise NotFoundError(f"dataset {dataset!r} is not an orthophoto (role {meta.get('role')!r})")
    return row, asset_dir(request, row) / str(meta.get("file", "dom.tif"))


@lru_cache(maxsize=64)
def _facts(path: str, mtime_ns: int) -> tuple[tuple[float, float, float, float], int, int]:
    """Lon/lat bounds, min and max zoom of a COG in WebMercatorQuad (cached per file version)."""
    from rio_tiler.io import Reader

    with Reader(path) as reader:
        return tuple(reader.get_geographic_bounds("EPSG:4326")), int(reader.minzoom), int(reader.maxzoom)


def facts(path: Path) -> tuple[tuple[float, float, float, float], int, int]:
    """:func:`_facts` of ``path``."""
    return _facts(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=1)
def empty_tile() -> bytes:
    """A fully transparent 256 × 256 PNG."""
    from rio_tiler.utils import render

    return render(np.zeros((3, TILE, TILE), dtype="uint8"), mask=np.zeros((TILE, TILE), dtype="uint8"))


def render_tile(path: Path, z: int, x: int, y: int) -> bytes:
    """The PNG of WebMercatorQuad tile ``z/x/y`` (alpha from the raster's mask, nodata or alpha band)."""
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io import Reader

    with Reader(str(path)) as reader:
        try:
            image = reader.tile(x, y, z, tilesize=TILE)
        except TileOutsideBounds:
            return empty_tile()
    return image.render(img_format="PNG")


def _q(tag: str) -> str:
    prefix, _, name = tag.rpartition(":")
    return f"{{{NS[prefix]}}}{name}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, _q(tag), {(_q(k.replace("__", ":")) if "__" in k else k): v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def capabilities_xml(dataset: str, title: str, bounds: tuple[float, float, float, float], maxzoom: int,
                     base: str) -> bytes:
    """OGC WMTS 1.0.0 capabilities (RESTful ResourceURL) of one layer on morecantile's WebMercatorQuad."""
    import morecantile

    tms = morecantile.tms.get(TMS_ID)
    for prefix, uri in NS.items():
        ET.register_namespace(prefix, uri)
    root = ET.Element(_q("Capabilities"), {"version": "1.0.0"})
    ident = _sub(root, "ows:ServiceIdentification")
    _sub(ident, "ows:Title", f"CIM orthophoto {title}")
    _sub(ident, "ows:ServiceType", "OGC WMTS")
    _sub(ident, "ows:ServiceTypeVersion", "1.0.0")
    contents = _sub(root, "Contents")
    layer = _sub(contents, "Layer")
    _sub(layer, "ows:Title", title)
    bbox = _sub(layer, "ows:WGS84BoundingBox")
    _sub(bbox, "ows:LowerCorner", f"{bounds[0]:.9f} {bounds[1]:.9f}")
    _sub(bbox, "ows:UpperCorner", f"{bounds[2]:.9f} {bounds[3]:.9f}")
    _sub(layer, "ows:Identifier", dataset)
    style = _sub(layer, "Style", isDefault="true")
    _sub(style, "ows:Identifier", "default")
    _sub(layer, "Format", "image/png")
    link = _sub(layer, "TileMatrixSetLink")
    _sub(link, "TileMatrixSet", TMS_ID)
    limits = _sub(link, "TileMatrixSetLimits")
    for z in range(maxzoom + 1):
        ul, lr = tms.tile(bounds[0], bounds[3], z), tms.tile(bounds[2], bounds[1], z)
        lim = _sub(limits, "TileMatrixLimits")
        _sub(lim, "TileMatrix", str(z))
        for tag, value in (("MinTileRow", ul.y), ("MaxTileRow", lr.y), ("MinTileCol", ul.x), ("MaxTileCol", lr.x)):
            _sub(lim, tag, str(value))
    _sub(layer, "ResourceURL", format="image/png", resourceType="tile",
         template=f"{base}/api/imagery/{dataset}/tiles/{{TileMatrix}}/{{TileCol}}/{{TileRow}}.png")
    tset = _sub(contents, "TileMatrixSet")
    _sub(tset, "ows:Identifier", TMS_ID)
    _sub(tset, "ows:SupportedCRS", "urn:ogc:def:crs:EPSG::3857")
    _sub(tset, "WellKnownScaleSet", "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    for z in range(maxzoom + 1):
        m = tms.matrix(z)
        tm = _sub(tset, "TileMatrix")
        _sub(tm, "ows:Identifier", str(z))
        _sub(tm, "ScaleDenominator", repr(m.scaleDenominator))
        _sub(tm, "TopLeftCorner", f"{m.pointOfOrigin[0]!r} {m.pointOfOrigin[1]!r}")
        _sub(tm, "TileWidth", str(m.tileWidth))
        _sub(tm, "TileHeight", str(m.tileHeight))
        _sub(tm, "MatrixWidth", str(m.matrixWidth))
        _sub(tm, "MatrixHeight", str(m.matrixHeight))
    _sub(root, "ServiceMetadataURL", xlink__href=f"{base}/api/imagery/{dataset}/WMTSCapabilities.xml")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def imagery_router() -> APIRouter:
    """The ``/api/imagery`` routes."""
    router = APIRouter(prefix="/api/imagery", tags=["imagery"])

    @router.get("/{dataset}/tiles/{z}/{x}/{y}.png", operation_id="getImageryTile",
                responses={200: {"content": {"image/png": {}}}})
    def tile(dataset: str, z: int, x: int, y: int, request: Request) -> Response:
        _, path = _dom(request, dataset)
        if not (0 <= z <= MAX_ZOOM and 0 <= x < (1 << z) and 0 <= y < (1 << z)):
            raise NotFoundError(f"no WebMercatorQuad tile {z}/{x}/{y}")
        return Response(render_tile(path, z, x, y), media_type="image/png", headers=CACHE)

    @router.get("/{dataset}/WMTSCapabilities.xml", operation_id="getImageryWMTSCapabilities",
                responses={200: {"content": {"application/xml": {}}}})
    def capabilities(dataset: str, request: Request) -> Response:
        row, path = _dom(request, dataset)
        bounds, _, maxzoom = facts(path)
        body = capabilities_xml(dataset, str(row.get("title") or dataset), bounds, maxzoom, _base(request))
        return Response(body, media_type="application/xml")

    @router.get("/{dataset}/tilejson.json", operation_id="getImageryTileJSON")
    def tilejson(dataset: str, request: Request) -> dict[str, Any]:
        row, path = _dom(request, dataset)
        bounds, minzoom, maxzoom = facts(path)
        return {"tilejson": "2.2.0", "name": row.get("title") or dataset, "scheme": "xyz",
                "tiles": [f"{_base(request)}/api/imagery/{dataset}/tiles/{{z}}/{{x}}/{{y}}.png"],
                "minzoom": minzoom, "maxzoom": maxzoom, "bounds": list(bounds),
                "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, minzoom]}

    return router
