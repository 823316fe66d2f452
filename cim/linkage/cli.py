"""``cim linkage …``: indicators, change feed, crosswalk, services, outbox, sync, notices, provincial polls.

The linkage file comes from ``--linkage-file`` or ``$CIM_LINKAGE_FILE``. While a web service holds a DuckDB
store (one writing process), run the sync inside it (``[sync] in_service = true``) instead of ``cim linkage
sync``.

Example::

    cim linkage indicators --store duckdb:///data/cim.duckdb
    cim linkage sync --until-idle            # enqueue what is new, deliver until nothing is pending
    cim linkage outbox                       # per-stream delivery state
    cim linkage province poll                # provincial mode: visit the cities
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from cim.errors import InvalidInputError
from cim.linkage.changes import read_changes
from cim.linkage.config import LinkageConfig, load_linkage_config
from cim.linkage.crosswalk import Link, find_external, find_ours, link
from cim.linkage.indicators import compute_indicators
from cim.linkage.notices import list_notices
from cim.linkage.outbox import Outbox
from cim.linkage.province import Province
from cim.linkage.registry import service_registry
from cim.linkage.sync import Sender, produce
from cim.settings import get_settings
from cim.store import open_store

linkage = typer.Typer(help="Linkage with provincial and national CIM platforms.", no_args_is_help=True)
province_app = typer.Typer(help="Provincial mode: poll the configured cities, show their state and sums.",
                           no_args_is_help=True)
linkage.add_typer(province_app, name="province")

StoreOpt = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)")
FileOpt = typer.Option(None, "--linkage-file", help="Linkage TOML (default: $CIM_LINKAGE_FILE)")


def _open(store: str | None) -> Any:
    return open_store(store or get_settings().store)


def _config(path: Path | None) -> LinkageConfig:
    return load_linkage_config(get_settings(), path)


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))


@linkage.command("indicators")
def indicators_cmd(store: str | None = StoreOpt, linkage_file: Path | None = FileOpt) -> None:
    """Print the core indicators of the store (JSON)."""
    cfg = _config(linkage_file)
    _print(compute_indicators(_open(store), platform=cfg.platform.id, level=cfg.platform.level))


@linkage.command("changes")
def changes_cmd(
    store: str | None = StoreOpt,
    cursor: str | None = typer.Option(None, "--cursor", help="Resume from this cursor"),
    since: datetime | None = typer.Option(None, "--since", help="Changes after this UTC time"),
    dataset: str | None = typer.Option(None, "--dataset", help="One dataset only"),
    since_version: int | None = typer.Option(None, "--since-version", help="With --dataset: after this version"),
    limit: int = typer.Option(500, "--limit", min=1, max=10000),
    ids: bool = typer.Option(False, "--ids", help="Ids only, no GeoJSON features"),
) -> None:
    """Print one page of the change feed (JSON; resume with its next_cursor)."""
    _print(read_changes(_open(store), cursor=cursor, since=since, dataset=dataset, since_version=since_version,
                        limit=limit, as_features=not ids).to_dict())


@linkage.command("crosswalk")
def crosswalk_cmd(
    store: str | None = StoreOpt,
    platform: str | None = typer.Option(None, "--platform", help="External platform (external → ours)"),
    scheme: str | None = typer.Option(None, "--scheme"),
    external_id: str | None = typer.Option(None, "--id", help="External id"),
    dataset: str | None = typer.Option(None, "--dataset", help="Our dataset (ours → external)"),
    feature_id: str | None = typer.Option(None, "--feature-id"),
    load: Path | None = typer.Option(None, "--import", help="CSV: platform,scheme,external_id,dataset_id,"
                                     "feature_id[,collection]"),
    replace: bool = typer.Option(False, "--replace", help="With --import: re-point existing external ids"),
) -> None:
    """Look up the crosswalk either way, or import links from a CSV file (all or nothing)."""
    s = _open(store)
    if load is not None:
        with load.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
        try:
            links = [Link(**{k: v for k, v in r.items() if k}) for r in rows]
        except TypeError as exc:
            raise InvalidInputError(f"CSV columns must be platform, scheme, external_id, dataset_id, feature_id "
                                    f"and optionally collection: {exc}", file=str(load)) from None
        _print({"written": link(s, links, created_by="cli", replace=replace)})
    elif platform:
        _print(find_ours(s, platform, scheme, external_id))
    elif dataset:
        _print(find_external(s, dataset, feature_id))
    else:
        raise InvalidInputError("give --platform (external → ours), --dataset (ours → external) or --import")


@linkage.command("services")
def services_cmd(store: str | None = StoreOpt, linkage_file: Path | None = FileOpt,
                 tiles_dir: Path = typer.Option(Path("out/tiles/pipes"), "--tiles-dir"),
                 buildings_tiles_dir: Path = typer.Option(Path("out/tiles/buildings"), "--buildings-tiles-dir")) -> None:
    """Print the service registry (collections, tilesets, analyses with health and call counts)."""
    cfg = _config(linkage_file)
    _print(service_registry(_open(store), get_settings(), platform=cfg.platform.id,
                            base_url=cfg.platform.base_url or "", tiles_dir=tiles_dir,
                            buildings_tiles_dir=buildings_tiles_dir))


@linkage.command("outbox")
def outbox_cmd(store: str | None = StoreOpt, as_json: bool = typer.Option(False, "--json"),
               retry: int | None = typer.Option(None, "--retry", help="Put this dead message back to pending")) -> None:
    """Show the delivery state per stream (or retry a dead message)."""
    box = Outbox(_open(store))
    if retry is not None:
        _print(box.retry(retry).to_dict())
        return
    streams = box.summary()
    if as_json:
        _print(streams)
        return
    table = Table("target", "stream", "enqueued", "delivered", "pending", "dead", "head", "head error")
    for s in streams:
        table.add_row(s["target"], s["stream"], str(s["enqueued"]), str(s["delivered"]), str(s["pending"]),
                      str(s["dead"]), str(s["head_seq"] or ""), (s["head_error"] or "")[:60])
    Console().print(table)


@linkage.command("sync")
def sync_cmd(
    store: str | None = StoreOpt, linkage_file: Path | None = FileOpt,
    enqueue: bool = typer.Option(True, "--enqueue/--no-enqueue", help="Enqueue indicators and changes first"),
    until_idle: bool = typer.Option(True, "--until-idle/--forever", help="Stop when nothing is pending"),
    deadline: float | None = typer.Option(None, "--deadline", help="Stop after this many seconds"),
) -> None:
    """Enqueue what is new and deliver the outbox to the upstream platforms (resumable at any point)."""
    cfg = _config(linkage_file)
    if not cfg.upstream:
        raise InvalidInputError("no [[upstream]] platform in the linkage file")
    s = _open(store)
    if enqueue:
        produce(s, cfg)
    stats = Sender(s, cfg).run(until_idle=until_idle, deadline_s=deadline)
    _print(stats.to_dict())


@linkage.command("notices")
def notices_cmd(store: str | None = StoreOpt, open_only: bool = typer.Option(False, "--open")) -> None:
    """List the notices and tasks received from upstream platforms."""
    _print(list_notices(_open(store), open_only=open_only))


@province_app.command("poll")
def province_poll_cmd(store: str | None = StoreOpt, linkage_file: Path | None = FileOpt) -> None:
    """Visit every configured city: running state, indicators, change feed."""
    results = Province(_open(store), _config(linkage_file)).poll()
    _print([{"city": r.city, "status": r.status, "latency_ms": r.latency_ms, "error": r.error,
             "change_pages": len(r.change_pages or [])} for r in results])


@province_app.command("status")
def province_status_cmd(store: str | None = StoreOpt, linkage_file: Path | None = FileOpt) -> None:
    """The cities' last known running state."""
    _print(Province(_open(store), _config(linkage_file)).cities())


@province_app.command("indicators")
def province_indicators_cmd(store: str | None = StoreOpt, linkage_file: Path | None = FileOpt) -> None:
    """The provincial indicators: the sum of the cities' latest documents."""
    _print(Province(_open(store), _config(linkage_file)).indicators())


def register(app: typer.Typer) -> None:
    """Add ``linkage`` to the ``cim`` app."""
    app.add_typer(linkage, name="linkage")
