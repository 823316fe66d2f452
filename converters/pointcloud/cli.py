"""``cim pointcloud ingest|info|query``: LAS/LAZ point clouds into the store, and spatial queries on them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from cim.errors import CIMError, InvalidInputError
from cim.heights import get_geoid
from cim.realscene.catalogue import build_dir_of
from cim.realscene.points import PointIndex, Selection, pipe_point
from cim.settings import get_settings
from cim.store import open_store
from converters.pointcloud.ingest import PointCloudOptions, ingest_pointcloud, inspect

console = Console(stderr=True)


def _floats(text: str | None, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidInputError(f"{name} must be comma-separated numbers, got {text!r}", field=name) from None


def _classes(text: str | None) -> set[int] | None:
    if not text:
        return None
    try:
        return {int(v) for v in text.split(",")}
    except ValueError:
        raise InvalidInputError(f"classes must be comma-separated ASPRS codes, got {text!r}", field="classes") from None


def _emit(index: PointIndex, sel: Selection, fmt: str, crs: str | None, out: Path | None, **extra: str) -> None:
    """Write a selection as json, geojson, csv (stdout or ``out``) or las (``out``)."""
    if fmt == "las":
        if out is None:
            console.print("[bold red]error:[/] --format las needs --out")
            sys.exit(2)
        out.write_bytes(index.to_las(sel))
        return
    if fmt == "csv":
        text = index.to_csv(sel, crs)
    elif fmt == "geojson":
        settings = get_settings()
        text = json.dumps(index.to_geojson(sel, get_geoid(settings.geoid, settings.geoid_path), **extra),
                          ensure_ascii=False)
    elif fmt == "json":
        text = json.dumps(index.to_json(sel, crs, **extra), ensure_ascii=False)
    else:
        console.print(f"[bold red]error:[/] unknown format {fmt!r} (json, geojson, csv, las)")
        sys.exit(2)
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        print(text)


def register(app: typer.Typer) -> None:
    """Add the ``pointcloud`` command group to the ``cim`` app."""
    pc = typer.Typer(help="Point clouds (LAS/LAZ 1.0–1.4, COPC): 3D Tiles and spatial queries.", no_args_is_help=True)
    app.add_typer(pc, name="pointcloud")

    @pc.command("ingest")
    def ingest_cmd(
        file: Path = typer.Argument(..., help="LAS or LAZ file"),
        dataset: str | None = typer.Option(None, "--id", "--dataset", help="Dataset id (default: the file name)"),
        title: str | None = typer.Option(None, "--title"),
        crs: str | None = typer.Option(None, "--crs", help="CRS of the coordinates when the file has none (or "
                                                           "overriding it), e.g. EPSG:4548 or EPSG:4548+5737"),
        grade: str = typer.Option("重要", "--grade", help="Data grade: 核心, 重要 or 一般 (GB/T 43697)"),
        secret: bool = typer.Option(False, "--secret", help="Mark the dataset secret (涉密)"),
        pnts: bool = typer.Option(False, "--pnts", help="Write 3D Tiles 1.0 pnts content instead of glTF"),
        workers: int = typer.Option(2, "--workers", help="Worker processes"),
        dask: str | None = typer.Option(None, "--dask", help="Run the tiling passes on a Dask cluster: 'local' "
                                        "(a LocalCluster of --workers) or a scheduler address (tcp://host:8786; "
                                        "workers must see the file and the assets folder at the same paths)"),
        as_json: bool = typer.Option(False, "--json", help="Print the catalogue metadata as JSON on stdout"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Convert a LAS/LAZ file to 3D Tiles (with a query copy) and catalogue it as a new version."""
        settings = get_settings()
        s = open_store(store or settings.store)
        options = PointCloudOptions(dataset_id=dataset, title=title, crs=crs, grade=grade, secret=secret,
                                    tiler={"content": "pnts" if pnts else "glb", "workers": workers,
                                           "dask": dask})
        try:
            with console.status("converting the point cloud") as status:
                r = ingest_pointcloud(file, s, settings, options, progress=lambda m: status.update(m))
        except CIMError as exc:
            console.print(f"[bold red]refused:[/] {exc}")
            console.print("nothing was stored")
            sys.exit(1)
        finally:
            s.close()
        m = r.metadata
        if as_json:
            print(json.dumps({"dataset": r.dataset_id, "version": r.version, "metadata": m}, ensure_ascii=False,
                             indent=2))
        console.print(
            f"[green]stored[/] {r.dataset_id} version {r.version}: {r.tiles['points']:,} points in {r.tiles['tiles']} "
            f"tiles ({r.tiles['seconds']:.1f} s, {r.tiles['points'] / max(r.tiles['seconds'], 1e-9):,.0f} points/s); "
            f"{m['crs_name']}, {m['density_per_m2']} points/m², classes {m['classification']}, "
            f"acquired {m['acquisition_date'] or 'unknown'}")

    @pc.command("info")
    def info_cmd(
        file: Path = typer.Argument(..., help="LAS or LAZ file"),
        crs: str | None = typer.Option(None, "--crs"),
    ) -> None:
        """Print a file's header facts and CRS (nothing is converted or stored)."""
        print(json.dumps(inspect(file, crs), ensure_ascii=False, indent=2, default=str))

    @pc.command("query")
    def query_cmd(
        dataset: str = typer.Argument(..., help="Point-cloud dataset id"),
        bbox: str | None = typer.Option(None, "--bbox", help="minx,miny,maxx,maxy[,minz,maxz] in --crs"),
        polygon: str | None = typer.Option(None, "--polygon", help="GeoJSON/WKT polygon, or a file holding one"),
        crs: str | None = typer.Option(None, "--crs", help="CRS of --bbox/--polygon and of x/y output "
                                                           "(default CRS84 lon/lat)"),
        near: str | None = typer.Option(None, "--near", help="Pipe point id (manhole): points around it"),
        radius: float = typer.Option(5.0, "--radius", help="Radius around --near (m)"),
        zmin: float | None = typer.Option(None, "--zmin", help="Lowest height (m, the cloud's height system)"),
        zmax: float | None = typer.Option(None, "--zmax"),
        classes: str | None = typer.Option(None, "--classes", help="ASPRS classes, e.g. 2,6"),
        count_only: bool = typer.Option(False, "--count", help="Only count"),
        fmt: str = typer.Option("json", "--format", help="json, geojson, csv or las"),
        limit: int = typer.Option(100_000, "--limit"),
        out: Path | None = typer.Option(None, "--out", help="Write the result here (default: stdout; las needs it)"),
        store: str | None = typer.Option(None, "--store", help="Store URL (default: $CIM_STORE)"),
    ) -> None:
        """Count or extract the points in a box, a polygon or around a manhole."""
        settings = get_settings()
        s = open_store(store or settings.store)
        try:
            row = s.get_dataset(dataset)
            index = PointIndex(build_dir_of(settings, row, getattr(s, "path", None)))
            if near:
                x, y, _h, _ds = pipe_point(s, near)
                region = index.circle(x, y, radius, settings.storage_crs, zmin=zmin, zmax=zmax, label=near)
            else:
                if polygon and Path(polygon).is_file():
                    polygon = Path(polygon).read_text(encoding="utf-8")
                region = index.region(polygon=polygon, bbox=_floats(bbox, "bbox"), crs=crs, zmin=zmin, zmax=zmax)
            cls = _classes(classes)
            if count_only:
                print(json.dumps({"dataset": dataset, "region": region.description, "count": index.count(region, cls)},
                                 ensure_ascii=False))
                return
            sel = index.select(region, cls, limit)
        except CIMError as exc:
            console.print(f"[bold red]error:[/] {exc}")
            sys.exit(1)
        finally:
            s.close()
        _emit(index, sel, fmt, crs, out, dataset=dataset, region=region.description)
        console.print(f"{sel.matched:,} points matched, {sel.returned:,} returned ({sel.tiles_read} tiles read)")
