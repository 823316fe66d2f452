"""A hanging element costs only itself: the worker's geometry budget (``geometry_stall_s``) on the Duplex.

The hang is simulated with the test-only hook ``CIM_IFC_HANG_GLOBALID`` (read by the geometry loop in the
worker child): the element's geometry step sleeps for ever, as a solid the kernel cannot finish would.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from ifc_samples import foreign, ifc

from converters.ifc.geometry import HANG_ENV
from converters.ifc.open import sniff
from converters.ifc.worker import ConversionResult, convert, run_worker

DUPLEX = "ifc2x3_revit2011_duplex_architecture.ifc"
SETTINGS = foreign("EPSG:26916")
#: a coffee table in the middle of the iterator's order: some meshes come before it, some after
HUNG = "2OBrcmyk58NupXoVOHUsab"
STALL_S = 5.0


def meshes(result: ConversionResult) -> dict[str, Any]:
    """Mesh (or None) by GlobalId."""
    return {e["global_id"]: e["mesh"] for e in result.elements}


@pytest.fixture(scope="module")
def reference() -> ConversionResult:
    """The Duplex converted in-process, without any hang."""
    return convert(sniff(ifc(DUPLEX)), SETTINGS, threads=2)


def test_without_a_stall_the_worker_matches_the_in_process_conversion(reference: ConversionResult) -> None:
    result = run_worker(sniff(ifc(DUPLEX)), SETTINGS, threads=2, geometry_stall_s=60.0)
    assert result.stats["geometry_retried"] == 0 and result.stats["geometry_timeout"] == 0
    assert result.origin == reference.origin
    got, want = meshes(result), meshes(reference)
    assert got.keys() == want.keys()
    assert {g: m and m.geometry_hash for g, m in got.items()} == {
        g: m and m.geometry_hash for g, m in want.items()
    }
    assert [f.code for f in result.findings] == [f.code for f in reference.findings]


def test_a_hanging_element_gets_a_timeout_finding_and_the_rest_keep_their_meshes(
    reference: ConversionResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    want = meshes(reference)
    assert want[HUNG] is not None
    monkeypatch.setenv(HANG_ENV, HUNG)
    notes: list[str] = []
    t0 = time.monotonic()
    result = run_worker(
        sniff(ifc(DUPLEX)),
        SETTINGS,
        threads=2,
        geometry_stall_s=STALL_S,
        time_budget_s=300.0,
        progress=notes.append,
    )
    elapsed = time.monotonic() - t0
    assert elapsed < 150.0
    got = meshes(result)
    assert got[HUNG] is None
    timeouts = [f for f in result.findings if f.code == "geometry.timeout"]
    assert len(timeouts) == 1 and HUNG in timeouts[0].message
    assert timeouts[0].severity == "warning" and f"within {STALL_S:g} s" in timeouts[0].message
    assert not any(f.code == "geometry.failed" for f in result.findings)
    # streamed meshes of the first pass were kept: only the rest was retried one by one
    assert 0 < result.stats["geometry_retried"] < sum(m is not None for m in want.values())
    assert any("retrying them one by one" in n for n in notes)
    assert result.origin == reference.origin
    others = {g: m and m.geometry_hash for g, m in want.items() if g != HUNG}
    assert {g: m and m.geometry_hash for g, m in got.items() if g != HUNG} == others
    assert result.stats["meshes"] == reference.stats["meshes"] - 1
