"""Valve segments and connectivity against WNTR and networkx on every real EPANET network in ../shared/data:
each model is ingested into the store, WNTR's strategic N-2 valve layer imported, and our partitions of
links and nodes must equal ``wntr.metrics.topographic.valve_segments`` exactly."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from cim.analysis.isolation import isolate, valve_segments
from cim.analysis.network import compiled
from cim.analysis.tracing import connectivity
from cim.analysis.valves import ValveSpec, import_valves, wntr_valve_layer
from cim.errors import InvalidInputError
from cim.settings import Settings
from cim.store import DuckDBStore
from converters.network.ingest import ingest_model, read_model
from converters.pipes.ingest import SurveyOptions

wntr = pytest.importorskip("wntr")

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "water_network"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared model data not present at {DATA}")
#: Network -> map units in metres (ky4 and Net6 are drawn in feet).
NETWORKS = {"Net1": 1.0, "Net2": 1.0, "Net3": 1.0, "ky4": 0.3048, "Net6": 0.3048}
JINAN = (500000.0, 4057000.0, 30.0)


_STORES: dict[str, DuckDBStore] = {}


def ingest(name: str) -> DuckDBStore:
    """``name`` in an in-memory store of its own (made once per module), its lower-left corner placed in Jinan
    (EPSG:4548). Tests replace the store's valve table with their own."""
    if name in _STORES:
        return _STORES[name]
    path, scale = DATA / f"{name}.inp", NETWORKS[name]
    _, raw = read_model(path, crs_in="EPSG:4548", scale=scale)
    east = min(float(v) for v in raw.points.column("y").to_pylist() if v is not None)
    north = min(float(v) for v in raw.points.column("x").to_pylist() if v is not None)
    store = DuckDBStore(":memory:")
    ingest_model(
        path,
        store,
        SurveyOptions(crs_in="EPSG:4548", keep_errors=True),
        offset=(JINAN[0] - east, JINAN[1] - north, JINAN[2]),
        scale=scale,
        settings=Settings(),
    )
    _STORES[name] = store
    return store


@pytest.fixture(scope="module", autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    for store in _STORES.values():
        store.close()
    _STORES.clear()


def partition(labels: Iterable[int], names: Iterable[str]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for label, name in zip(labels, names, strict=True):
        groups.setdefault(int(label), set()).add(name)
    return {frozenset(g) for g in groups.values()}


def wntr_segments(wn, specs: list[ValveSpec]) -> tuple[pd.Series, pd.Series]:
    layer = pd.DataFrame([(s.link, s.node) for s in specs], columns=["link", "node"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicated valves are dropped by WNTR with a warning
        nodes, links, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), layer)
    return nodes, links


@pytest.mark.parametrize("name", list(NETWORKS))
def test_valve_segments_and_components_equal_wntr_and_networkx(name: str, frame) -> None:
    store = ingest(name)
    wn = wntr.network.WaterNetworkModel(str(DATA / f"{name}.inp"))
    specs = wntr_valve_layer(DATA / f"{name}.inp", "strategic", n=2, seed=sum(map(ord, name)))
    assert import_valves(store, name, specs, source="wntr strategic N-2") == len(specs) > 0
    net = compiled(store, name)
    segs = valve_segments(store, net)
    assert len(segs.valves.ids) == len(specs) and not segs.valves.skipped
    nodes, links = wntr_segments(wn, specs)
    assert partition(segs.edge_seg, net.line_id.to_pylist()) == partition(links.values, links.index)
    assert partition(segs.node_seg, net.node_ids(np.arange(net.n_nodes))) == partition(
        nodes.values, nodes.index
    )
    result = connectivity(store, frame, dataset=name)
    assert len(result.components) + result.isolated_points == nx.number_connected_components(
        wn.to_graph().to_undirected()
    )


def test_isolating_a_net3_pipe_closes_exactly_the_valves_around_its_wntr_segment(frame) -> None:
    store = ingest("Net3")
    wn = wntr.network.WaterNetworkModel(str(DATA / "Net3.inp"))
    specs = wntr_valve_layer(DATA / "Net3.inp", "strategic", n=2, seed=11)
    import_valves(store, "Net3", specs, source="wntr")
    nodes, links = wntr_segments(wn, specs)
    sizes = links.value_counts()
    link = next(k for k in sorted(links.index) if sizes[links[k]] >= 3)  # a segment of several pipes
    seg = links[link]
    result = isolate(store, frame, segment=link, dataset="Net3").to_dict()
    assert result["failed_segment"] == link
    assert set(result["isolated"]["segments"]) == set(links.index[links == seg])
    assert set(result["isolated"]["nodes"]) == set(nodes.index[nodes == seg])
    expected = {f"V{i}" for i, s in enumerate(specs) if (links[s.link] == seg) != (nodes[s.node] == seg)}
    assert {v["valve_id"] for v in result["valves"] if v["state"] == "close"} == expected
    assert all(v["kind"] == "edge" for v in result["valves"])
    assert result["outage"] is not None  # Net3 has reservoirs (水源) and tanks (水池)
    # one of them failing opens the next ring: the isolated part now spans two WNTR segments or more
    failed = sorted(expected)[0]
    wider = isolate(store, frame, segment=link, dataset="Net3", failed_valves=[failed]).to_dict()
    assert set(wider["isolated"]["segments"]) > set(result["isolated"]["segments"])
    assert len({int(links[k]) for k in wider["isolated"]["segments"]}) >= 2
    with pytest.raises(InvalidInputError, match="valve 'X'.*node 'nowhere'"):
        import_valves(store, "Net3", [ValveSpec("X", link, "nowhere")], source="t")
