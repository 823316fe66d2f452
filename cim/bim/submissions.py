"""BIM submissions for drawing review (施工图审查) and handover: their lifecycle in the store.

Statuses and transitions (each one transaction that also writes a ``bim_review_events`` row)::

    (new) ──create──▶ submitted ──record_checks──▶ checked ──▶ passed | failed
    passed ──review accept──▶ accepted          passed | failed ──review reject──▶ rejected

``checked`` is passed through within the transaction of :func:`record_checks` (both events are
logged); a submission is ``failed`` when any finding has severity ``error``. Checks may be recorded
again while the submission is ``submitted``, ``passed`` or ``failed`` (the findings are replaced);
``accepted`` and ``rejected`` are final.

Submission ids are ``S`` + UTC time to the millisecond + 4 random base-32 characters
(``S20250612083015123K7QF``): short, unique and sorted by submission time.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cim.bim.files import StoredFile
from cim.bim.ids import SEVERITIES, Finding
from cim.errors import InvalidInputError, NotFoundError

STAGES: tuple[str, ...] = ("drawing_review", "handover")
STATUSES: tuple[str, ...] = ("submitted", "checked", "passed", "failed", "accepted", "rejected")
DECISIONS: tuple[str, ...] = ("accept", "reject")
CHECK_KINDS: tuple[str, ...] = ("ids", "georef", "delivery", "clearance")
_RECHECKABLE = ("submitted", "passed", "failed")
_B32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base 32: no I, L, O, U


@dataclass(frozen=True)
class Submission:
    """One submitted model file and where it stands."""

    id: str
    project: str
    stage: str
    dataset_id: str
    version: int
    file_sha256: str
    file_name: str | None
    status: str
    submitted_by: str | None
    submitted_at: datetime
    checked_at: datetime | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class ReviewEvent:
    """One status change of a submission."""

    submission_id: str
    event_at: datetime
    actor: str | None
    from_status: str | None
    to_status: str
    comment: str | None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_submission_id(now: datetime | None = None) -> str:
    """``S`` + UTC ``YYYYMMDDHHMMSSmmm`` + 4 random base-32 characters."""
    now = now or _now()
    stamp = now.strftime("%Y%m%d%H%M%S") + f"{now.microsecond // 1000:03d}"
    return "S" + stamp + "".join(secrets.choice(_B32) for _ in range(4))


def _event(
    con: Any, sid: str, at: datetime, actor: str | None, from_: str | None, to: str, comment: str | None
) -> None:
    con.execute(
        "INSERT INTO bim_review_events VALUES (?, ?, ?, ?, ?, ?)", [sid, at, actor, from_, to, comment]
    )


_COLUMNS = (
    "id, project, stage, dataset_id, version, file_sha256, file_name, status, submitted_by, submitted_at, "
    "checked_at, summary, note"
)


def _submission(row: tuple[Any, ...]) -> Submission:
    values = list(row)
    values[11] = json.loads(values[11]) if values[11] else {}
    return Submission(*values)


def create_submission(
    store: Any,
    *,
    project: str,
    stage: str,
    dataset_id: str,
    version: int,
    file: StoredFile,
    submitted_by: str | None,
    note: str | None = None,
) -> Submission:
    """Register a submitted model file (status ``submitted``).

    Raises:
        InvalidInputError: empty project, unknown stage, version < 1.
    """
    if not project or not project.strip():
        raise InvalidInputError("project must not be empty", field="project")
    if stage not in STAGES:
        raise InvalidInputError(f"stage {stage!r} is not one of {STAGES}", field="stage")
    if not isinstance(version, int) or version < 1:
        raise InvalidInputError(f"version must be a positive integer, not {version!r}", field="version")
    now = _now()
    with store.transaction() as con:
        sid = new_submission_id(now)
        while con.execute("SELECT 1 FROM bim_submissions WHERE id = ?", [sid]).fetchone():
            sid = new_submission_id(now)
        con.execute(
            f"INSERT INTO bim_submissions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'submitted', ?, ?, NULL, NULL, ?)",
            [
                sid,
                project.strip(),
                stage,
                dataset_id,
                version,
                file.sha256,
                file.name,
                submitted_by,
                now,
                note,
            ],
        )
        _event(con, sid, now, submitted_by, None, "submitted", note)
    return get_submission(store, sid)


def _status(con: Any, submission_id: str) -> str:
    row = con.execute("SELECT status FROM bim_submissions WHERE id = ?", [submission_id]).fetchone()
    if row is None:
        raise NotFoundError(f"submission {submission_id!r} does not exist")
    return str(row[0])


def _as_finding(item: Finding | Mapping[str, Any]) -> Finding:
    f = item if isinstance(item, Finding) else Finding(**dict(item))
    if f.severity not in SEVERITIES:
        raise InvalidInputError(
            f"finding severity {f.severity!r} is not one of {SEVERITIES}", field="severity"
        )
    if f.check_kind not in CHECK_KINDS:
        raise InvalidInputError(
            f"check kind {f.check_kind!r} is not one of {CHECK_KINDS}", field="check_kind"
        )
    if not f.rule_id or not f.message:
        raise InvalidInputError("a finding needs a rule_id and a message", field="rule_id")
    return f


def record_checks(
    store: Any,
    submission_id: str,
    findings: Iterable[Finding | Mapping[str, Any]],
    summary: Mapping[str, Any] | None = None,
    *,
    actor: str | None = "system",
) -> Submission:
    """Store the check findings; the submission goes to ``checked``, then ``passed`` or ``failed``.

    ``summary`` (e.g. :meth:`IdsReport.summary`, rule set, timings) is kept with counts by severity
    and check kind added.

    Raises:
        NotFoundError: no such submission.
        InvalidInputError: the submission is final (accepted/rejected), or a finding is malformed.
    """
    items = [_as_finding(f) for f in findings]
    counts = {f"{s}s": sum(f.severity == s for f in items) for s in SEVERITIES}
    by_kind = {
        k: sum(f.check_kind == k for f in items) for k in CHECK_KINDS if any(f.check_kind == k for f in items)
    }
    outcome = "failed" if counts["errors"] else "passed"
    full_summary = {**dict(summary or {}), **counts, "findings": len(items), "by_check_kind": by_kind}
    now = _now()
    with store.transaction() as con:
        current = _status(con, submission_id)
        if current not in _RECHECKABLE:
            raise InvalidInputError(
                f"submission {submission_id} is {current}: checks can only be recorded while it is "
                f"{', '.join(_RECHECKABLE)}",
                field="status",
            )
        con.execute("DELETE FROM bim_check_findings WHERE submission_id = ?", [submission_id])
        if items:
            con.executemany(
                "INSERT INTO bim_check_findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        submission_id,
                        f.check_kind,
                        f.rule_id,
                        f.severity,
                        f.global_id,
                        f.ifc_class,
                        f.expected,
                        f.found,
                        f.message,
                    ]
                    for f in items
                ],
            )
        con.execute(
            "UPDATE bim_submissions SET status = ?, checked_at = ?, summary = ? WHERE id = ?",
            [outcome, now, json.dumps(full_summary, ensure_ascii=False, default=str), submission_id],
        )
        _event(con, submission_id, now, actor, current, "checked", f"{len(items)} findings")
        _event(
            con,
            submission_id,
            now,
            actor,
            "checked",
            outcome,
            f"{counts['errors']} errors, {counts['warnings']} warnings",
        )
    return get_submission(store, submission_id)


def review(
    store: Any, submission_id: str, *, actor: str, decision: str, comment: str | None = None
) -> Submission:
    """A reviewer's decision: ``accept`` (only a passed submission) or ``reject`` (passed or failed).

    Raises:
        NotFoundError: no such submission.
        InvalidInputError: unknown decision, no actor, or the current status does not allow it.
    """
    if decision not in DECISIONS:
        raise InvalidInputError(f"decision {decision!r} is not one of {DECISIONS}", field="decision")
    if not actor or not actor.strip():
        raise InvalidInputError("a review needs the reviewer's name (actor)", field="actor")
    allowed = ("passed",) if decision == "accept" else ("passed", "failed")
    target = "accepted" if decision == "accept" else "rejected"
    now = _now()
    with store.transaction() as con:
        current = _status(con, submission_id)
        if current not in allowed:
            raise InvalidInputError(
                f"cannot {decision} submission {submission_id}: its status is {current!r}, "
                f"only a {' or '.join(allowed)} submission can be {target}",
                field="status",
            )
        con.execute("UPDATE bim_submissions SET status = ? WHERE id = ?", [target, submission_id])
        _event(con, submission_id, now, actor.strip(), current, target, comment)
    return get_submission(store, submission_id)


def get_submission(store: Any, submission_id: str) -> Submission:
    """One submission; raises NotFoundError."""
    row = (
        store.read()
        .execute(f"SELECT {_COLUMNS} FROM bim_submissions WHERE id = ?", [submission_id])
        .fetchone()
    )
    if row is None:
        raise NotFoundError(f"submission {submission_id!r} does not exist")
    return _submission(row)


def list_submissions(
    store: Any, project: str | None = None, stage: str | None = None, status: str | None = None
) -> list[Submission]:
    """Submissions, oldest first, filtered by project, stage and status when given."""
    where, params = [], []
    for column, value in (("project", project), ("stage", stage), ("status", status)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT {_COLUMNS} FROM bim_submissions" + (" WHERE " + " AND ".join(where) if where else "")
    return [_submission(r) for r in store.read().execute(sql + " ORDER BY id", params).fetchall()]


def events(store: Any, submission_id: str) -> list[ReviewEvent]:
    """The status history of a submission, oldest first; raises NotFoundError."""
    get_submission(store, submission_id)
    rows = (
        store.read()
        .execute(
            "SELECT * FROM bim_review_events WHERE submission_id = ? ORDER BY event_at, rowid",
            [submission_id],
        )
        .fetchall()
    )
    return [ReviewEvent(*r) for r in rows]


def findings(store: Any, submission_id: str) -> list[Finding]:
    """The recorded findings of a submission: errors first, then by check kind, rule and element."""
    rows = (
        store.read()
        .execute(
            """SELECT check_kind, rule_id, severity, message, global_id, ifc_class, expected, found
           FROM bim_check_findings WHERE submission_id = ?
           ORDER BY CASE severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                    check_kind, rule_id, global_id NULLS FIRST""",
            [submission_id],
        )
        .fetchall()
    )
    return [Finding(*r) for r in rows]
