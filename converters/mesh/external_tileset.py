"""Existing 3D Tiles tilesets (exported by photogrammetry software or other tools) registered as they are.

Validation before anything is copied; each refusal names its rule:

* ``jsonInvalid``, ``assetVersionMissing``, ``assetVersionUnknown`` (1.0 and 1.1 are accepted),
  ``geometricErrorInvalid`` (a number ≥ 0, on the tileset and every tile), ``rootMissing``;
* ``boundingVolumeInvalid`` / ``boundingVolumeRegionArrayElementsOutOfRange`` (region: west/east in
  [-π, π], south ≤ north in [-π/2, π/2], minimum height ≤ maximum; box: 12 numbers; sphere: 4, radius ≥ 0),
  ``transformInvalid`` (16 finite numbers), ``refineInvalid`` (ADD or REPLACE);
* ``extensionRequiredButNotUsed`` (extensionsRequired ⊆ extensionsUsed);
* ``contentMissing`` / ``contentOutsideFolder`` / ``contentMagicInvalid``: every content and external
  tileset exists inside the folder with the right magic (b3dm, pnts, i3dm, cmpt, glb, JSON glTF, tileset
  JSON, subtree); external tilesets are validated the same way;
* ``implicitTilingInvalid``: the scheme, levels and subtree template; every subtree file is a valid
  ``subtree`` (header, JSON chunk) and every file matching the content template has the right magic.

Placement: a region gives lon/lat directly; a box or sphere goes through the root ``transform`` into ECEF.
A tileset whose root lies nowhere near the earth's surface (a local model, e.g. boxes around 0,0,0) is
refused (``notOnEarth``) unless an explicit ``origin`` (lon, lat, ellipsoidal height) is given: the
tileset is then copied under ``source/`` and a small wrapper ``tileset.json`` puts the centre of its root
bounding volume at the origin, axes east-north-up.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from pyproj import Transformer

from cim.errors import InvalidInputError
from cim.realscene.catalogue import locate, new_build_dir, register
from cim.settings import Settings
from cim.store import DatasetInfo

VERSIONS = ("1.0", "1.1")
MAGIC = {b"b3dm": "b3dm", b"pnts": "pnts", b"i3dm": "i3dm", b"cmpt": "cmpt", b"glTF": "glb", b"subt": "subtree"}
_EARTH_HEIGHTS = (-12_000.0, 100_000.0)  # ellipsoidal heights a placed model can have (m)


class TilesetRuleError(InvalidInputError):
    """A tileset breaks one validation rule (``rule``)."""

    def __init__(self, rule: str, message: str, *, file: str | None = None, field: str | None = None) -> None:
        self.rule = rule
        super().__init__(f"rule {rule}: {message}", file=file, field=field)


@dataclass
class TilesetCheck:
    """What validation found: counts and the root's placement."""

    tiles: int = 0
    contents: int = 0
    external: int = 0
    subtrees: int = 0
    versions: set[str] = field(default_factory=set)
    root_volume: dict[str, Any] = field(default_factory=dict)
    root_transform: list[float] | None = None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_bounding_volume(bv: Any, where: str, file: str) -> None:
    """One ``boundingVolume`` (or ``viewerRequestVolume``)."""
    if not isinstance(bv, dict) or not any(k in bv for k in ("region", "box", "sphere")) and not bv.get(
            "extensions"):
        raise TilesetRuleError("boundingVolumeInvalid", f"{where} needs a region, box or sphere", file=file)
    if "region" in bv:
        r = bv["region"]
        if not isinstance(r, list) or len(r) != 6 or not all(_number(v) for v in r):
            raise TilesetRuleError("boundingVolumeInvalid", f"{where}.region must be 6 numbers", file=file)
        west, south, east, north, hmin, hmax = r
        bad = [name for name, ok in (("west", -math.pi <= west <= math.pi), ("east", -math.pi <= east <= math.pi),
                                     ("south", -math.pi / 2 <= south <= math.pi / 2),
                                     ("north", -math.pi / 2 <= north <= math.pi / 2),
                                     ("south ≤ north", south <= north), ("minimum ≤ maximum height", hmin <= hmax))
               if not ok]
        if bad:
            raise TilesetRuleError("boundingVolumeRegionArrayElementsOutOfRange",
                                   f"{where}.region {r} out of range ({', '.join(bad)})", file=file)
    if "box" in bv and (not isinstance(bv["box"], list) or len(bv["box"]) != 12
                        or not all(_number(v) for v in bv["box"])):
        raise TilesetRuleError("boundingVolumeInvalid", f"{where}.box must be 12 numbers", file=file)
    if "sphere" in bv:
        s = bv["sphere"]
        if not isinstance(s, list) or len(s) != 4 or not all(_number(v) for v in s) or s[3] < 0:
            raise TilesetRuleError("boundingVolumeInvalid", f"{where}.sphere must be 4 numbers, radius ≥ 0",
                                   file=file)


def _magic(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head in MAGIC:
        return MAGIC[head]
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return "json" if stripped.startswith(b"{") or (not stripped and _json_like(path)) else "unknown"


def _json_like(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _resolve(base: Path, uri: Any, root: Path, where: str, file: str) -> Path:
    if not isinstance(uri, str) or not uri:
        raise TilesetRuleError("contentMissing", f"{where}.uri is missing", file=file)
    parts = urlsplit(uri)
    if parts.scheme or parts.netloc or uri.startswith("/"):
        raise TilesetRuleError("contentOutsideFolder", f"{where}.uri {uri!r} is not a relative path", file=file)
    target = (base / unquote(parts.path)).resolve()
    if not target.is_relative_to(root):
        raise TilesetRuleError("contentOutsideFolder", f"{where}.uri {uri!r} leaves the tileset folder", file=file)
    return target


class _Validator:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.check = TilesetCheck()
        self.seen: set[Path] = set()

    def tileset(self, path: Path) -> None:
        file = str(path)
        self.seen.add(path.resolve())
        try:
            doc = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TilesetRuleError("jsonInvalid", f"not valid JSON: {exc}", file=file) from None
        if not isinstance(doc, dict):
            raise TilesetRuleError("jsonInvalid", "a tileset is a JSON object", file=file)
        asset = doc.get("asset")
        if not isinstance(asset, dict) or "version" not in asset:
            raise TilesetRuleError("assetVersionMissing", "asset.version is missing", file=file, field="asset")
        if asset["version"] not in VERSIONS:
            raise TilesetRuleError("assetVersionUnknown", f"asset.version {asset['version']!r} is not one of "
                                   f"{VERSIONS}", file=file, field="asset.version")
        self.check.versions.add(asset["version"])
        if not _number(doc.get("geometricError")) or doc["geometricError"] < 0:
            raise TilesetRuleError("geometricErrorInvalid", "the tileset geometricError must be a number ≥ 0",
                                   file=file, field="geometricError")
        used, required = doc.get("extensionsUsed", []), doc.get("extensionsRequired", [])
        if not isinstance(used, list) or not isinstance(required, list):
            raise TilesetRuleError("extensionsInvalid", "extensionsUsed/Required must be arrays", file=file)
        missing = [e for e in required if e not in used]
        if missing:
            raise TilesetRuleError("extensionRequiredButNotUsed", f"extensionsRequired {missing} are not in "
                                   "extensionsUsed", file=file, field="extensionsRequired")
        if not isinstance(doc.get("root"), dict):
            raise TilesetRuleError("rootMissing", "the tileset has no root tile", file=file, field="root")
        is_top = self.check.tiles == 0
        if is_top:
            self.check.root_volume = doc["root"].get("boundingVolume") or {}
            self.check.root_transform = doc["root"].get("transform")
        self.tiles(doc["root"], path.parent, file)

    def tiles(self, root_tile: dict[str, Any], base: Path, file: str) -> None:
        stack: list[tuple[Any, str, bool]] = [(root_tile, "root", True)]
        while stack:
            tile, where, is_root = stack.pop()
            self.tile(tile, where, is_root, base, file)
            for i, child in enumerate(tile.get("children") or []):
                stack.append((child, f"{where}.children[{i}]", False))

    def tile(self, tile: Any, where: str, is_root: bool, base: Path, file: str) -> None:
        if not isinstance(tile, dict):
            raise TilesetRuleError("tileInvalid", f"{where} is not an object", file=file)
        self.check.tiles += 1
        check_bounding_volume(tile.get("boundingVolume"), f"{where}.boundingVolume", file)
        if "viewerRequestVolume" in tile:
            check_bounding_volume(tile["viewerRequestVolume"], f"{where}.viewerRequestVolume", file)
        if not _number(tile.get("geometricError")) or tile["geometricError"] < 0:
            raise TilesetRuleError("geometricErrorInvalid", f"{where}.geometricError must be a number ≥ 0", file=file)
        if "refine" in tile and tile["refine"] not in ("ADD", "REPLACE"):
            raise TilesetRuleError("refineInvalid", f"{where}.refine {tile['refine']!r} is not ADD or REPLACE",
                                   file=file)
        if "transform" in tile and (not isinstance(tile["transform"], list) or len(tile["transform"]) != 16
                                    or not all(_number(v) for v in tile["transform"])):
            raise TilesetRuleError("transformInvalid", f"{where}.transform must be 16 numbers", file=file)
        children = tile.get("children", [])
        if not isinstance(children, list):
            raise TilesetRuleError("tileInvalid", f"{where}.children is not an array", file=file)
        contents = ([tile["content"]] if "content" in tile else []) + list(tile.get("contents") or [])
        if "implicitTiling" in tile:
            self.implicit(tile, where, base, file, contents)
            return
        for k, content in enumerate(contents):
            if not isinstance(content, dict):
                raise TilesetRuleError("contentMissing", f"{where} content {k} is not an object", file=file)
            if "boundingVolume" in content:
                check_bounding_volume(content["boundingVolume"], f"{where}.content.boundingVolume", file)
            self.content(_resolve(base, content.get("uri", content.get("url")), self.root, f"{where}.content",
                                  file), f"{where}.content")

    def content(self, target: Path, where: str) -> None:
        if not target.is_file():
            raise TilesetRuleError("contentMissing", f"{where}: {target.relative_to(self.root)} does not exist",
                                   file=str(target))
        kind = _magic(target)
        suffix = target.suffix.lower()
        expected = {".b3dm": "b3dm", ".pnts": "pnts", ".i3dm": "i3dm", ".cmpt": "cmpt", ".glb": "glb",
                    ".gltf": "json", ".json": "json", ".subtree": "subtree"}.get(suffix)
        if kind == "unknown" or (expected is not None and kind != expected):
            raise TilesetRuleError("contentMagicInvalid", f"{where}: {target.name} is not a {expected or 'tile'} "
                                   f"file (magic {kind})", file=str(target))
        self.check.contents += 1
        if kind == "json" and suffix != ".gltf":
            try:
                is_tileset = "asset" in json.loads(target.read_text(encoding="utf-8-sig")) and \
                    "root" in json.loads(target.read_text(encoding="utf-8-sig"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise TilesetRuleError("jsonInvalid", f"not valid JSON: {exc}", file=str(target)) from None
            if is_tileset and target.resolve() not in self.seen:
                self.check.external += 1
                self.tileset(target)

    def implicit(self, tile: dict[str, Any], where: str, base: Path, file: str, contents: list[Any]) -> None:
        it = tile["implicitTiling"]
        ok = isinstance(it, dict) and it.get("subdivisionScheme") in ("QUADTREE", "OCTREE") \
            and isinstance(it.get("subtreeLevels"), int) and it["subtreeLevels"] >= 1 \
            and isinstance(it.get("availableLevels"), int) and it["availableLevels"] >= 1 \
            and isinstance(it.get("subtrees"), dict) and isinstance(it["subtrees"].get("uri"), str)
        if not ok:
            raise TilesetRuleError("implicitTilingInvalid", f"{where}.implicitTiling needs subdivisionScheme "
                                   "QUADTREE/OCTREE, subtreeLevels ≥ 1, availableLevels ≥ 1 and subtrees.uri",
                                   file=file)
        octree = it["subdivisionScheme"] == "OCTREE"
        root_subtree = it["subtrees"]["uri"].replace("{level}", "0").replace("{x}", "0").replace("{y}", "0") \
            .replace("{z}", "0")
        first = _resolve(base, root_subtree, self.root, f"{where}.implicitTiling.subtrees", file)
        if not first.is_file():
            raise TilesetRuleError("implicitTilingInvalid", f"the root subtree {root_subtree} does not exist",
                                   file=file)
        for target in _template_files(base, it["subtrees"]["uri"], octree):
            self.subtree(target)
        for content in contents:
            uri = content.get("uri") if isinstance(content, dict) else None
            if not isinstance(uri, str):
                raise TilesetRuleError("contentMissing", f"{where}.content.uri is missing", file=file)
            for target in _template_files(base, uri, octree):
                self.content(target, f"{where}.content")

    def subtree(self, path: Path) -> None:
        data = path.read_bytes()
        file = str(path)
        if data[:4] == b"subt":
            if len(data) < 24:
                raise TilesetRuleError("implicitTilingInvalid", "subtree header is truncated", file=file)
            version = int.from_bytes(data[4:8], "little")
            json_len = int.from_bytes(data[8:16], "little")
            bin_len = int.from_bytes(data[16:24], "little")
            if version != 1 or 24 + json_len + bin_len > len(data):
                raise TilesetRuleError("implicitTilingInvalid", f"subtree version {version} or chunk lengths "
                                       "do not fit the file", file=file)
            text = data[24:24 + json_len]
        else:
            text = data
        try:
            doc = json.loads(text.decode("utf-8").rstrip(" \0"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TilesetRuleError("implicitTilingInvalid", f"subtree JSON is invalid: {exc}", file=file) from None
        if not isinstance(doc, dict) or "tileAvailability" not in doc or "childSubtreeAvailability" not in doc:
            raise TilesetRuleError("implicitTilingInvalid", "subtree lacks tileAvailability or "
                                   "childSubtreeAvailability", file=file)
        self.check.subtrees += 1


def _template_files(base: Path, template: str, octree: bool) -> list[Path]:
    """Files under ``base`` matching an implicit-tiling URI template."""
    pattern = re.escape(unquote(template))
    for name in ("level", "x", "y", "z"):
        pattern = pattern.replace(re.escape("{" + name + "}"), r"\d+")
    regex = re.compile(pattern + r"$")
    return sorted(p for p in base.rglob("*") if p.is_file() and regex.match(p.relative_to(base).as_posix()))


def validate_tileset(folder: str | Path) -> TilesetCheck:
    """Validate ``folder/tileset.json`` and everything it refers to; raise :class:`TilesetRuleError`."""
    folder = Path(folder)
    path = folder / "tileset.json" if folder.is_dir() else folder
    if not path.is_file():
        raise InvalidInputError("no tileset.json", file=str(path))
    validator = _Validator(path.parent)
    validator.tileset(path)
    for p in path.parent.rglob("*"):
        if p.is_symlink():
            raise TilesetRuleError("contentOutsideFolder", "symbolic links are not accepted", file=str(p))
    return validator.check


# ---------------------------------------------------------------------------------------------------
# placement


def _box_corners(bv: dict[str, Any]) -> np.ndarray:
    if "box" in bv:
        b = np.asarray(bv["box"], dtype="f8")
        c, axes = b[:3], b[3:].reshape(3, 3)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype="f8")
        return c + signs @ axes
    s = np.asarray(bv["sphere"], dtype="f8")
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype="f8")
    return s[:3] + signs * s[3]


def root_lonlat(check: TilesetCheck) -> tuple[tuple[float, float, float, float, float, float], bool]:
    """(lon/lat/height bbox of the root volume, whether it lies on the earth)."""
    bv = check.root_volume
    if not any(k in bv for k in ("region", "box", "sphere")):
        raise TilesetRuleError("boundingVolumeUnsupported", "the root bounding volume is only given by an "
                               "extension: it cannot be placed")
    if "region" in bv:
        w, s, e, n, hmin, hmax = (float(v) for v in bv["region"])
        return (math.degrees(w), math.degrees(s), hmin, math.degrees(e), math.degrees(n), hmax), True
    corners = _box_corners(bv)
    m = np.asarray(check.root_transform or np.eye(4).T.reshape(-1).tolist(), dtype="f8").reshape(4, 4).T
    ecef = np.c_[corners, np.ones(len(corners))] @ m.T
    lon, lat, h = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True).transform(
        ecef[:, 0], ecef[:, 1], ecef[:, 2])
    on_earth = bool(np.isfinite(h).all() and _EARTH_HEIGHTS[0] <= float(np.min(h))
                    and float(np.max(h)) <= _EARTH_HEIGHTS[1])
    return (float(np.min(lon)), float(np.min(lat)), float(np.min(h)), float(np.max(lon)), float(np.max(lat)),
            float(np.max(h))), on_earth


def _wrapper(check: TilesetCheck, origin: tuple[float, float, float], geometric_error: float) -> dict[str, Any]:
    """A tileset placing the root volume's centre at ``origin`` (east-north-up axes)."""
    corners = _box_corners(check.root_volume)
    m = np.asarray(check.root_transform or np.eye(4).T.reshape(-1).tolist(), dtype="f8").reshape(4, 4).T
    local = np.c_[corners, np.ones(len(corners))] @ m.T
    centre = local[:, :3].mean(axis=0)
    half = (local[:, :3].max(axis=0) - local[:, :3].min(axis=0)) / 2.0
    lon, lat, h = (math.radians(origin[0]), math.radians(origin[1]), origin[2])
    a, f = 6_378_137.0, 1 / 298.257222101
    e2 = f * (2 - f)
    nn = a / math.sqrt(1 - e2 * math.sin(lat) ** 2)
    p = np.array([(nn + h) * math.cos(lat) * math.cos(lon), (nn + h) * math.cos(lat) * math.sin(lon),
                  (nn * (1 - e2) + h) * math.sin(lat)])
    east = np.array([-math.sin(lon), math.cos(lon), 0.0])
    north = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
    up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
    enu = np.eye(4)
    enu[:3, 0], enu[:3, 1], enu[:3, 2], enu[:3, 3] = east, north, up, p
    shift = np.eye(4)
    shift[:3, 3] = -centre
    matrix = enu @ shift
    box = [*map(float, centre), float(max(half[0], 0.01)), 0, 0, 0, float(max(half[1], 0.01)), 0, 0, 0,
           float(max(half[2], 0.01))]
    return {"asset": {"version": "1.1"}, "geometricError": geometric_error,
            "root": {"transform": [float(v) for v in matrix.T.reshape(-1)], "boundingVolume": {"box": box},
                     "geometricError": geometric_error, "refine": "REPLACE",
                     "content": {"uri": "source/tileset.json"}}}


@dataclass
class TilesetResult:
    """What a registration stored."""

    dataset_id: str
    version: int
    counts: dict[str, Any]
    lonlat: tuple[float, float, float, float]
    wrapped: bool


def register_tileset(folder: str | Path, store: Any, settings: Settings, *, dataset_id: str | None = None,
                     title: str | None = None, grade: str = "重要",
                     origin: tuple[float, float, float] | None = None) -> TilesetResult:
    """Validate a tileset folder, copy it into a build folder and catalogue it (``kind="tileset"``)."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    dataset_id = dataset_id or folder.name
    DatasetInfo(dataset_id, "", "tileset", settings.storage_crs, grade=grade).validate()
    check = validate_tileset(folder)
    bbox, on_earth = root_lonlat(check)
    wrapped = False
    wrapper: dict[str, Any] = {}
    if origin is not None:
        if "region" in check.root_volume:
            raise InvalidInputError("the tileset is placed by a region already: --origin is not used for it",
                                    field="origin")
        wrapped = True
        top = json.loads((folder / "tileset.json").read_text(encoding="utf-8-sig"))
        wrapper = _wrapper(check, origin, float(top["geometricError"]))
        placed = TilesetCheck(root_volume=wrapper["root"]["boundingVolume"],
                              root_transform=wrapper["root"]["transform"])
        bbox, _ = root_lonlat(placed)
    elif not on_earth:
        raise TilesetRuleError(
            "notOnEarth", "the root bounding volume (with the root transform) does not lie on the earth: a "
            "local model; give --origin lon,lat,height to place the centre of its root volume there",
            file=str(folder / "tileset.json"))
    extent = locate(bbox, "EPSG:4490", settings, file=str(folder / "tileset.json"))
    build = new_build_dir(settings, dataset_id, getattr(store, "path", None))
    try:
        target = build / "source" if wrapped else build
        shutil.copytree(folder, target, dirs_exist_ok=True)
        if wrapped:
            (build / "tileset.json").write_text(json.dumps(wrapper, indent=1), encoding="utf-8")
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    counts = {"tiles": check.tiles, "contents": check.contents, "external_tilesets": check.external,
              "subtrees": check.subtrees, "versions": sorted(check.versions)}
    info = DatasetInfo(dataset_id, title or dataset_id, "tileset", settings.storage_crs, source_crs="EPSG:4978",
                       vertical_crs=None, grade=grade,
                       metadata={"tileset": "tileset.json", "asset_version": sorted(check.versions),
                                 "placed_by_origin": list(origin) if wrapped and origin else None})
    version = register(store, info, extent, build, sources=[{"path": str(folder)}], counts=counts,
                       note=f"3D Tiles {'/'.join(sorted(check.versions))}, {check.tiles} tiles")
    return TilesetResult(dataset_id, version.version, counts, extent.lonlat, wrapped)
