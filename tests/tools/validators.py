"""Validation helpers for the test suite and CI: the Khronos glTF validator and the official JSON schemas.

* :func:`gltf_validate` runs ``validate_gltf.mjs`` (npm ``gltf-validator``, installed by
  ``npm ci --ignore-scripts``) on .glb files.
* :func:`schema_validate` checks an instance against one schema file of ``../shared/schemas`` (JSON
  Schema draft 2020-12); every schema there is registered under its file URI so relative ``$ref`` s
  resolve file by file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT202012

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
SCHEMAS = SHARED / "schemas"
TILES_SCHEMAS = SCHEMAS / "3d-tiles"
MESH_FEATURES_SCHEMAS = SCHEMAS / "gltf-ext" / "EXT_mesh_features" / "schema"
STRUCTURAL_METADATA_SCHEMAS = SCHEMAS / "gltf-ext" / "EXT_structural_metadata" / "schema"
GLTF_VALIDATOR = REPO / "node_modules" / "gltf-validator"
VALIDATE_SCRIPT = Path(__file__).resolve().parent / "validate_gltf.mjs"

# Core glTF 2.0 schemas the extension schemas refer to but the shared folder does not ship:
# minimal equivalents of glTFProperty, glTFid and textureInfo from the glTF 2.0 specification.
_GLTF_PROPERTY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "extensions": {"type": "object", "additionalProperties": {"type": "object"}},
        "extras": {},
    },
}
_GLTF_ID: dict[str, Any] = {"type": "integer", "minimum": 0}
_GLTF_CORE: dict[str, dict[str, Any]] = {
    "glTFProperty.schema.json": _GLTF_PROPERTY,
    "glTFid.schema.json": _GLTF_ID,
    "textureInfo.schema.json": {
        "allOf": [_GLTF_PROPERTY],
        "properties": {"index": _GLTF_ID, "texCoord": {"type": "integer", "minimum": 0}},
        "required": ["index"],
    },
}


class ValidatorUnavailable(RuntimeError):
    """The node glTF validator cannot run here (node or node_modules missing)."""


def gltf_validator_available() -> bool:
    """Whether ``node`` and ``node_modules/gltf-validator`` are both present."""
    return shutil.which("node") is not None and (GLTF_VALIDATOR / "package.json").is_file()


def gltf_validate(paths: Iterable[str | Path]) -> dict[Path, dict[str, Any]]:
    """Run the Khronos glTF validator on each file; map each path to its issues summary.

    A report has ``numErrors``, ``numWarnings``, ``numInfos``, ``numHints`` and ``messages`` (each
    ``{code, message, severity, pointer | offset}``).
    """
    files = [Path(p) for p in paths]
    if not files:
        return {}
    node = shutil.which("node")
    if node is None:
        raise ValidatorUnavailable("node is not installed; the glTF validator needs Node.js")
    if not (GLTF_VALIDATOR / "package.json").is_file():
        raise ValidatorUnavailable(
            f"{GLTF_VALIDATOR} is missing: run `npm ci --ignore-scripts` in {REPO} to install gltf-validator"
        )
    done = subprocess.run(
        [node, str(VALIDATE_SCRIPT), *(str(f) for f in files)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if len(lines) != len(files):
        raise RuntimeError(f"validate_gltf.mjs failed (exit {done.returncode}): {done.stderr.strip()}")
    reports: dict[Path, dict[str, Any]] = {}
    for path, line in zip(files, lines, strict=True):
        report = json.loads(line)
        if "error" in report:
            raise RuntimeError(f"glTF validator could not read {path}: {report['error']}")
        reports[path] = report
    return reports


def _retrieve(uri: str) -> Resource:
    """Resolve a ``$ref`` the registry lacks: only the core glTF schemas, by file name."""
    name = uri.rsplit("/", 1)[-1]
    if name in _GLTF_CORE:
        return DRAFT202012.create_resource({"$id": uri, **_GLTF_CORE[name]})
    raise NoSuchResource(ref=uri)


@lru_cache(maxsize=1)
def schema_registry() -> Registry:
    """Every ``*.json`` schema under the shared schema folder, registered under its file URI."""
    if not SCHEMAS.is_dir():
        raise FileNotFoundError(f"specification schemas not found at {SCHEMAS}")
    resources = []
    for file in sorted(SCHEMAS.rglob("*.json")):
        contents = json.loads(file.read_text(encoding="utf-8"))
        uri = file.resolve().as_uri()
        # the files' own $id are bare file names (repeated across folders): use the file's URI instead
        resources.append((uri, DRAFT202012.create_resource({**contents, "$id": uri})))
    return Registry(retrieve=_retrieve).with_resources(resources)


def schema_validate(instance: Any, schema_file: Path) -> list[str]:
    """Validate ``instance`` against one schema file (absolute, or relative to the shared schema folder).

    Returns one ``"<json pointer>: <message>"`` line per error, empty when valid.
    """
    path = schema_file if schema_file.is_absolute() else SCHEMAS / schema_file
    registry = schema_registry()
    uri = path.resolve().as_uri()
    schema = registry.contents(uri)
    validator = Draft202012Validator(schema, registry=registry)
    found = sorted((_pointer(e.absolute_path), e.message) for e in validator.iter_errors(instance))
    return [f"{pointer or '/'}: {message}" for pointer, message in found]


def _pointer(path: Iterable[Any]) -> str:
    """JSON pointer of an error location (``""`` for the instance itself)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _prefixed(prefix: str, errors: list[str]) -> list[str]:
    """Re-root ``schema_validate`` errors under the JSON pointer ``prefix``."""
    return [prefix + (e[1:] if e.startswith("/:") else e) for e in errors]


def validate_tileset_json(path: str | Path) -> list[str]:
    """Validate a tileset.json file against the 3D Tiles 1.1 ``tileset.schema.json``."""
    tileset = json.loads(Path(path).read_text(encoding="utf-8"))
    return schema_validate(tileset, TILES_SCHEMAS / "tileset.schema.json")


def validate_gltf_extensions(gltf_json: dict[str, Any]) -> list[str]:
    """Validate the glTF's ``EXT_structural_metadata`` and each primitive's ``EXT_mesh_features``.

    Errors are prefixed with the extension object's JSON pointer in the glTF.
    """
    errors: list[str] = []
    metadata = gltf_json.get("extensions", {}).get("EXT_structural_metadata")
    if metadata is not None:
        schema = STRUCTURAL_METADATA_SCHEMAS / "glTF.EXT_structural_metadata.schema.json"
        errors += _prefixed("/extensions/EXT_structural_metadata", schema_validate(metadata, schema))
    schema = MESH_FEATURES_SCHEMAS / "mesh.primitive.EXT_mesh_features.schema.json"
    for m, mesh in enumerate(gltf_json.get("meshes", [])):
        for p, primitive in enumerate(mesh.get("primitives", [])):
            features = primitive.get("extensions", {}).get("EXT_mesh_features")
            if features is not None:
                where = f"/meshes/{m}/primitives/{p}/extensions/EXT_mesh_features"
                errors += _prefixed(where, schema_validate(features, schema))
    return errors
