"""Real-scene 3D assets on the web: the layer list the viewer starts from, and each asset's files.

``GET /api/realscene/layers``: every catalogued point cloud, raster (DEM/DOM), mesh and registered tileset
the caller may read, with the URLs of its services. ``GET /tiles/realscene/{dataset}/{path}``: the files of
an asset's current build (3D Tiles JSON, glTF, pnts, b3dm, subtrees, textures).

Real-scene files are served only to callers with full access to the dataset (its grade and secret flag,
:func:`cim.security.policy.dataset_access`); others get 404 as if it did not exist — the catalogue entry
itself stays visible through OGC API Records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from api.security import get_principal
from cim.errors import InvalidInputError, NotFoundError
from cim.realscene.catalogue import REALSCENE_KINDS, build_dir_of
from cim.security.policy import Access, Principal, dataset_access
from cim.store.duckdb_ import json_value

#: Media types of files an asset build may serve.
ASSET_MEDIA_TYPES = {
    ".json": "application/json", ".glb": "model/gltf-binary", ".gltf": "model/gltf+json",
    ".pnts": "application/octet-stream", ".b3dm": "application/octet-stream", ".i3dm": "application/octet-stream",
    ".cmpt": "application/octet-stream", ".subtree": "application/octet-stream", ".bin": "application/octet-stream",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".ktx2": "image/ktx2",
    ".terrain": "application/vnd.quantized-mesh",
}


def asset_row(request: Request, dataset_id: str, kinds: tuple[str, ...] = REALSCENE_KINDS) -> dict[str, Any]:
    """The catalogue row of a real-scene asset the caller may read in full; 404 otherwise.

    Routes serving an asset's data (tiles, imagery, terrain, point queries) call this first.
    """
    principal: Principal = get_principal(request)
    store = request.app.state.services.store()
    try:
        row = store.get_dataset(dataset_id)
    except NotFoundError:
        raise NotFoundError(f"no real-scene dataset {dataset_id!r}") from None
    if row.get("kind") not in kinds or dataset_access(principal, row.get("grade"), bool(row.get("secret"))) \
            is not Access.FULL:
        raise NotFoundError(f"no real-scene dataset {dataset_id!r}" + (f" of kind {'/'.join(kinds)}"
                                                                       if kinds != REALSCENE_KINDS else ""))
    return row


def asset_dir(request: Request, row: dict[str, Any]) -> Path:
    """The folder of the asset's current build."""
    services = request.app.state.services
    store = services.store()
    return build_dir_of(services.settings, row, getattr(store, "path", None))


def layer_of(row: dict[str, Any]) -> dict[str, Any]:
    """One asset as a viewer layer: what it is, where it lies and the URLs of its services."""
    meta = json_value(row.get("metadata")) or {}
    did, kind = str(row["id"]), str(row["kind"])
    layer: dict[str, Any] = {
        "id": did, "title": row.get("title"), "kind": kind, "role": meta.get("role", kind),
        "bbox": meta.get("bbox_lonlat"), "version": row.get("current_version"),
        "grade": row.get("grade"), "links": {},
    }
    links = layer["links"]
    if meta.get("tileset"):
        links["tileset"] = f"/tiles/realscene/{did}/{meta['tileset']}"
    if kind == "raster" and meta.get("role") == "dom":
        links["xyz"] = f"/api/imagery/{did}/tiles/{{z}}/{{x}}/{{y}}.png"
        links["wmts"] = f"/api/imagery/{did}/WMTSCapabilities.xml"
    if kind == "raster" and meta.get("role") == "dem":
        links["terrain"] = f"/api/terrain/{did}/"
        links["elevation"] = f"/api/terrain/{did}/elevation"
    if kind == "pointcloud":
        links["points"] = f"/api/pointclouds/{did}/points"
    return layer


def realscene_router() -> APIRouter:
    """``/api/realscene/layers`` and ``/tiles/realscene/{dataset}/{path}``."""
    router = APIRouter(tags=["real-scene 3D"])

    @router.get("/api/realscene/layers", operation_id="getRealSceneLayers")
    def layers(request: Request, principal: Annotated[Principal, Depends(get_principal)]) -> dict[str, Any]:
        store = request.app.state.services.store()
        rows = [d for d in store.datasets() if d.get("kind") in REALSCENE_KINDS
                and dataset_access(principal, d.get("grade"), bool(d.get("secret"))) is Access.FULL]
        return {"layers": [layer_of(d) for d in rows]}

    @router.head("/tiles/realscene/{dataset}/{path:path}", operation_id="headRealSceneFile")
    @router.get("/tiles/realscene/{dataset}/{path:path}", operation_id="getRealSceneFile")
    def asset_file(dataset: str, path: str, request: Request) -> Response:
        root = asset_dir(request, asset_row(request, dataset))
        parts = Path(path).parts
        if not path or path.startswith(("/", "\\")) or ".." in parts or "\\" in path:
            raise InvalidInputError(f"path {path!r} leaves the asset folder")
        file = (root / path).resolve()
        if not file.is_relative_to(root.resolve()) or not file.is_file() \
                or file.suffix.lower() not in ASSET_MEDIA_TYPES:
            raise NotFoundError(f"no file {path!r} in dataset {dataset!r}")
        st = file.stat()
        # a build folder never changes once published: its files can be cached for long
        headers = {"ETag": f'"{st.st_mtime_ns:x}-{st.st_size:x}"', "Cache-Control": "public, max-age=86400"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        return FileResponse(file, media_type=ASSET_MEDIA_TYPES[file.suffix.lower()], headers=headers)

    return router
