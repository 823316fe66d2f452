"""The ID crosswalk: external ids ``(platform, scheme, id)`` ↔ our ``(dataset, feature_id)``.

Links point at the *stable* feature id within a dataset (the survey's point id or line key, a BIM GlobalId),
not at the row's ``fid``, so they survive re-ingests: a lookup answers the feature's current row (``fid``)
when it still exists, and ``current: false`` once a re-ingest removed it.

Example::

    link(store, [Link("370000", "sd-pipe", "SD-0001", "jinan-pipes", "JS1-JS2", "pipe-segments")])
    find_ours(store, "370000", "sd-pipe", "SD-0001")        # -> [{"dataset_id": "jinan-pipes", ...}]
    find_external(store, "jinan-pipes", "JS1-JS2")          # -> [{"platform": "370000", ...}]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cim.errors import InvalidInputError, NotFoundError
from cim.linkage.outbox import utcnow

COLLECTIONS = ("pipe-segments", "pipe-points", "bim-elements", "features")
_CURRENT = {
    "pipe-segments": "SELECT fid FROM pipe_segments WHERE dataset_id = ? AND feature_id = ? AND version_to IS NULL",
    "pipe-points": "SELECT fid FROM pipe_points WHERE dataset_id = ? AND feature_id = ? AND version_to IS NULL",
    "features": "SELECT fid FROM features WHERE dataset_id = ? AND feature_id = ? AND version_to IS NULL",
    "bim-elements": "SELECT e.dataset_id || ':' || e.version || ':' || e.global_id FROM bim_elements e "
                    "JOIN datasets d ON d.id = e.dataset_id AND d.current_version = e.version "
                    "WHERE e.dataset_id = ? AND e.global_id = ?",
}
_COLS = ("platform", "scheme", "external_id", "dataset_id", "feature_id", "collection", "created_at", "created_by")


@dataclass(frozen=True)
class Link:
    """One external id and the feature it names."""

    platform: str
    scheme: str
    external_id: str
    dataset_id: str
    feature_id: str
    collection: str = "pipe-segments"

    def validate(self) -> None:
        for name in ("platform", "scheme", "external_id", "dataset_id", "feature_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise InvalidInputError(f"{name} must be 1 to 200 characters", field=name, value=value)
        if self.collection not in COLLECTIONS:
            raise InvalidInputError(f"collection {self.collection!r} is not one of {', '.join(COLLECTIONS)}",
                                    field="collection")


def link(store: Any, links: Sequence[Link], *, created_by: str | None = None, replace: bool = False) -> int:
    """Store ``links`` in one transaction; an external id already linked elsewhere is refused unless
    ``replace`` (then re-pointed). The datasets must exist. Returns how many were written."""
    for lk in links:
        lk.validate()
    now = utcnow()
    with store.transaction() as con:
        known = {r[0] for r in con.execute("SELECT id FROM datasets").fetchall()}
        for i, lk in enumerate(links):
            if lk.dataset_id not in known:
                raise InvalidInputError(f"dataset {lk.dataset_id!r} does not exist", row=i, field="dataset_id")
            row = con.execute("SELECT dataset_id, feature_id FROM linkage_crosswalk WHERE platform = ? AND scheme = ? "
                              "AND external_id = ?", [lk.platform, lk.scheme, lk.external_id]).fetchone()
            if row and tuple(row) != (lk.dataset_id, lk.feature_id) and not replace:
                raise InvalidInputError(f"{lk.platform}/{lk.scheme}/{lk.external_id} already names "
                                        f"{row[0]}/{row[1]} (replace to re-point it)", row=i, field="external_id")
            con.execute("DELETE FROM linkage_crosswalk WHERE platform = ? AND scheme = ? AND external_id = ?",
                        [lk.platform, lk.scheme, lk.external_id])
            con.execute("INSERT INTO linkage_crosswalk VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [lk.platform, lk.scheme, lk.external_id, lk.dataset_id, lk.feature_id, lk.collection, now,
                         created_by])
    return len(links)


def unlink(store: Any, platform: str, scheme: str, external_id: str) -> None:
    """Remove one link; raises NotFoundError when there is none."""
    with store.transaction() as con:
        n = con.execute("SELECT count(*) FROM linkage_crosswalk WHERE platform = ? AND scheme = ? AND external_id = ?",
                        [platform, scheme, external_id]).fetchone()[0]
        if not n:
            raise NotFoundError(f"no crosswalk entry {platform}/{scheme}/{external_id}")
        con.execute("DELETE FROM linkage_crosswalk WHERE platform = ? AND scheme = ? AND external_id = ?",
                    [platform, scheme, external_id])


def _resolve(cur: Any, rows: list[tuple]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = dict(zip(_COLS, r, strict=True))
        d["created_at"] = d["created_at"].isoformat() + "Z"
        hit = cur.execute(_CURRENT[d["collection"]], [d["dataset_id"], d["feature_id"]]).fetchone()
        d["current"] = hit is not None
        d["item_id"] = hit[0] if hit else None  # the OGC API item id of the current row
        out.append(d)
    return out


def find_ours(store: Any, platform: str, scheme: str | None = None, external_id: str | None = None,
              *, limit: int = 1000) -> list[dict[str, Any]]:
    """Our features named by external ids of ``platform`` (optionally one scheme / one id)."""
    where, params = ["platform = ?"], [platform]
    for col, value in (("scheme", scheme), ("external_id", external_id)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    cur = store.read()
    try:
        rows = cur.execute(f"SELECT {', '.join(_COLS)} FROM linkage_crosswalk WHERE {' AND '.join(where)} "
                           f"ORDER BY scheme, external_id LIMIT {int(limit)}", params).fetchall()
        return _resolve(cur, rows)
    finally:
        cur.close()


def find_external(store: Any, dataset_id: str, feature_id: str | None = None, *, platform: str | None = None,
                  limit: int = 1000) -> list[dict[str, Any]]:
    """External ids of our feature ``(dataset_id, feature_id)`` (or of every feature of the dataset)."""
    where, params = ["dataset_id = ?"], [dataset_id]
    for col, value in (("feature_id", feature_id), ("platform", platform)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    cur = store.read()
    try:
        rows = cur.execute(f"SELECT {', '.join(_COLS)} FROM linkage_crosswalk WHERE {' AND '.join(where)} "
                           f"ORDER BY platform, scheme, external_id LIMIT {int(limit)}", params).fetchall()
        return _resolve(cur, rows)
    finally:
        cur.close()
