"""The package layering: ``cim`` is the core; ``converters`` and ``tiles`` build on it; ``api`` is the shell.

Every ``.py`` file's import statements (anywhere in the file, relative ones resolved) are read with
``ast``; ``importlib.import_module("...")`` and ``__import__("...")`` with a literal name count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cim", "converters", "tiles", "api")

#: package -> top-level names it must never import
FORBIDDEN: dict[str, set[str]] = {
    "cim": {"converters", "tiles", "api", "fastapi", "starlette"},
    "converters": {"api", "tiles", "fastapi", "starlette"},
    "tiles": {"api", "converters", "fastapi", "starlette"},
}


def module_name(path: Path, root: Path = ROOT) -> str:
    """Dotted module name of a file under ``root`` (``cim/store/__init__.py`` -> ``cim.store``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Absolute dotted names of every module ``source`` (the module ``module``) imports."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = ".".join(p for p in (base, node.module or "") if p)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" if target else alias.name for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    found.discard("")
    return found


def _top_levels(names: set[str]) -> set[str]:
    return {name.split(".", 1)[0] for name in names}


def _python_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize(
    ("source", "module", "is_package", "expected"),
    [
        ("import api.routes", "cim.crs", False, {"api.routes"}),
        ("from api import app", "cim.crs", False, {"api", "api.app"}),
        ("def f():\n    import fastapi\n", "cim.store.duckdb_", False, {"fastapi"}),
        ("from .. import tiles", "converters.pipes.raw", False, {"converters", "converters.tiles"}),
        ("from ... import api", "converters.pipes.raw", False, {"api"}),
        ("from .schema import DDL", "cim.store", True, {"cim.store.schema", "cim.store.schema.DDL"}),
        ("from ..crs import get_crs", "cim.store.duckdb_", False, {"cim.crs", "cim.crs.get_crs"}),
        (
            "import importlib\nimportlib.import_module('tiles.writer')",
            "cim.cli",
            False,
            {"importlib", "tiles.writer"},
        ),
        ("__import__('starlette')", "cim.cli", False, {"starlette"}),
    ],
)
def test_the_import_reader_finds_every_kind_of_import(
    source: str, module: str, is_package: bool, expected: set[str]
) -> None:
    assert imported_modules(source, module, is_package=is_package) == expected


def test_module_name_drops_init_and_suffix() -> None:
    assert module_name(ROOT / "cim" / "store" / "__init__.py") == "cim.store"
    assert module_name(ROOT / "cim" / "crs.py") == "cim.crs"


def test_the_core_package_has_files_to_check() -> None:
    files = _python_files("cim")
    assert ROOT / "cim" / "crs.py" in files
    assert len(files) > 10


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_the_layers_below_them(package: str) -> None:
    offences = []
    for path in _python_files(package):
        names = imported_modules(
            path.read_text(encoding="utf-8"), module_name(path), is_package=path.name == "__init__.py"
        )
        bad = _top_levels(names) & FORBIDDEN[package]
        if bad:
            offences.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offences, "layering broken:\n" + "\n".join(offences)


def test_every_package_directory_is_covered_by_a_rule() -> None:
    for package in PACKAGES:
        if package != "api":
            assert package in FORBIDDEN
