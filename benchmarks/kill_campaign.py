"""Kill campaign: SIGKILL every kind of job (pipe CSV, EPANET, SWMM, IFC ingest, BIM submission, pipe and
building tiling) at random and labelled points, check the store and tile folders after each kill with the
doctor, then resume or re-run the job and check again.

    python benchmarks/kill_campaign.py [--kills 104] [--seed 7] [--kinds pipes_csv,ifc] [--workspace DIR]

Prints, per job kind, kills, inconsistencies found after the kills, re-runs that failed and inconsistencies
after the re-runs; exits 1 when any was found. Each kind has its own store, so one bug cannot cascade.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

import kill_harness as kh  # noqa: E402

MODES = ("delay", "exec", "commit", "committed", "delay")
TILE_MODES = ("delay", "exec", "glb", "glb", "delay")


def campaign(kills: int, seed: int, kinds: list[str], root: Path, log: bool = True) -> dict:
    """Run ``kills`` kill trials spread over ``kinds``; returns the summary."""
    rng = random.Random(seed)
    inputs = root / "inputs"
    kh.prepare(inputs)
    jobs = kh.jobs()
    rows: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    failures: list[str] = []
    stats, runs = {}, {}
    for kind in kinds:
        ws = kh.workspace(inputs, root / kind)
        if kind in kh.NEEDS:
            code, err, _ = kh.run_job(ws, jobs[kh.NEEDS[kind]].argv(ws, 0))
            if code:
                raise RuntimeError(f"{kind}: preparing the store failed: {err}")
        stats[kind] = kh.measure(ws, jobs[kind], 0)
        runs[kind] = 1
    t0 = time.perf_counter()
    trials = 0
    while rows_total(rows) < kills and trials < kills * 3:
        kind = kinds[trials % len(kinds)]
        modes = TILE_MODES if kind.startswith("tiles") else MODES
        mode = modes[(trials // len(kinds)) % len(modes)]
        trials += 1
        t = kh.trial(root / kind, jobs[kind], runs[kind], mode, rng, stats[kind])
        runs[kind] += 1
        row = rows[kind]
        row["trials"] += 1
        row["kills"] += int(t.killed)
        row["inconsistencies"] += len(t.errors)
        row["rerun_failed"] += int(not t.rerun_ok)
        row["after_rerun"] += len([e for e in t.rerun_errors if not e.startswith("re-run failed")])
        row["resumed"] += t.resumed
        for e in t.errors + t.rerun_errors:
            failures.append(f"{kind} {t.mode}: {e[-600:]}")
        if log:
            state = "ok" if not (t.errors or t.rerun_errors) else "PROBLEM"
            print(f"[{time.perf_counter() - t0:6.1f}s] {kind:12s} {t.mode:14s} killed={t.killed!s:5s} {state}",
                  flush=True)
    total = {k: sum(r[k] for r in rows.values()) for k in
             ("trials", "kills", "inconsistencies", "rerun_failed", "after_rerun", "resumed")}
    return {"seed": seed, "per_kind": {k: dict(v) for k, v in rows.items()}, "total": total,
            "seconds": round(time.perf_counter() - t0, 1), "failures": failures}


def rows_total(rows: dict) -> int:
    """Kills so far."""
    return sum(r["kills"] for r in rows.values())


def main(argv: list[str] | None = None) -> int:
    """Command line: run the campaign and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=104)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--kinds", default=",".join(kh.jobs()))
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="Also write the summary here")
    args = ap.parse_args(argv)
    kinds = [k for k in args.kinds.split(",") if k]
    with tempfile.TemporaryDirectory(prefix="cim-kill-") as tmp:
        summary = campaign(args.kills, args.seed, kinds, args.workspace or Path(tmp))
    print(f"\n{'kind':12s} {'trials':>6s} {'kills':>6s} {'incons.':>8s} {'rerun fail':>10s} {'after rerun':>11s} "
          f"{'resumed':>7s}")
    for kind, r in summary["per_kind"].items():
        print(f"{kind:12s} {r['trials']:6d} {r['kills']:6d} {r['inconsistencies']:8d} {r['rerun_failed']:10d} "
              f"{r['after_rerun']:11d} {r['resumed']:7d}")
    t = summary["total"]
    print(f"{'total':12s} {t['trials']:6d} {t['kills']:6d} {t['inconsistencies']:8d} {t['rerun_failed']:10d} "
          f"{t['after_rerun']:11d} {t['resumed']:7d}   in {summary['seconds']} s")
    for f in summary["failures"][:20]:
        print("  " + f.replace("\n", " ")[:400])
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    bad = t["inconsistencies"] + t["rerun_failed"] + t["after_rerun"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
