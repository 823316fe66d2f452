"""Network models (EPANET, SWMM) through the same staging, QC and store as pipe surveys."""

from __future__ import annotations

from pathlib import Path

from cim.errors import InvalidInputError
from cim.qc.report import QCReport
from cim.settings import Settings, get_settings
from cim.store import DuckDBStore, VersionInfo
from converters.network.epanet import read_epanet
from converters.network.model import NetworkTables
from converters.network.swmm import read_swmm
from converters.pipes.ingest import Progress, SurveyInput, SurveyOptions, _sha256, check, write_checked

MODEL_KINDS = {"epanet": "water_model", "swmm": "drainage_model"}


def detect_model_format(path: Path) -> str:
    """'epanet' or 'swmm' from the section headers of an ``.inp`` file."""
    try:
        head = Path(path).read_text(encoding="utf-8", errors="replace").upper()
    except FileNotFoundError:
        raise InvalidInputError("file does not exist", file=str(path)) from None
    if "[CONDUITS]" in head or "[SUBCATCHMENTS]" in head:
        return "swmm"
    if "[PIPES]" in head or "[JUNCTIONS]" in head:
        return "epanet"
    raise InvalidInputError("not an EPANET or SWMM .inp file (no [PIPES] or [CONDUITS] section)", file=str(path))


def read_model(
    path: Path, *, crs_in: str, offset: tuple[float, float, float] = (0.0, 0.0, 0.0), scale: float = 1.0,
    fmt: str | None = None,
) -> tuple[str, NetworkTables]:
    """Read an EPANET or SWMM model placed with ``crs_in``, ``offset`` and ``scale``."""
    fmt = fmt or detect_model_format(path)
    if fmt == "epanet":
        return fmt, read_epanet(path, crs_in=crs_in, offset=offset, scale=scale)
    if fmt == "swmm":
        return fmt, read_swmm(path, crs_in=crs_in, offset=offset, scale=scale)
    raise InvalidInputError(f"unknown model format {fmt!r} (epanet, swmm)", file=str(path))


def ingest_model(
    path: Path,
    store: DuckDBStore,
    options: SurveyOptions,
    *,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> tuple[VersionInfo, QCReport]:
    """Read a network model and store it as a new dataset version (QC with the model rule set)."""
    settings = settings or get_settings()
    if not options.crs_in:
        from cim.errors import CRSMissingError

        raise CRSMissingError("network models carry local coordinates: give --crs and --offset to place them")
    fmt, tables = read_model(Path(path), crs_in=options.crs_in, offset=offset, scale=scale)
    survey = SurveyInput(
        points=[tables.points],
        lines=[tables.lines],
        sources=[{"file": str(path), "layer": fmt, "kind": "model", "rows": tables.points.num_rows + tables.lines.num_rows,
                  "encoding": "utf-8", "sha256": _sha256(Path(path)), "offset": list(offset), "scale": scale}],
        header_problems=[],
    )
    options.source_kind = "model"
    checked = check(survey, options, settings, progress)
    dataset_id = options.dataset_id or Path(path).stem
    checked.report.dataset = dataset_id
    try:
        version = write_checked(checked, store, settings, kind=MODEL_KINDS[fmt], dataset_id=dataset_id, progress=progress)
    finally:
        checked.con.close()
    return version, checked.report
