"""Reports of a BIM submission: JSON (stable, with a JSON Schema), printable HTML and BCF 2.1.

* :func:`report_json` builds the machine-readable report; its format is the JSON Schema
  ``cim/bim/rules/report.schema.json`` (``REPORT_SCHEMA_PATH``, ``$id`` = ``REPORT_SCHEMA_ID``).
  Findings carry the element's name and storey from the stored model when the converter stored it.
* :func:`render_html` turns that report into one self-contained page (every value escaped).
* :func:`write_bcf` writes a BCF 2.1 zip with bcf-client: one topic per failing element and rule
  (the element's failures of that rule are listed in the description; model-level findings get a
  topic each) and, for an element, a viewpoint selecting it by GlobalId (``Components/Selection``).
  The viewpoints carry no camera: BCF cameras are in model coordinates, which the store does not
  keep; viewers zoom to the selection.
"""

from __future__ import annotations

import html
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cim import __version__
from cim.bim.submissions import events, get_submission
from cim.store.duckdb_ import json_value

REPORT_SCHEMA_PATH = Path(__file__).with_name("rules") / "report.schema.json"
REPORT_SCHEMA_ID = "https://cim-service.example/schemas/bim-review-report/1.0"
REPORT_SCHEMA_VERSION = "1.0"
TOOL_NAME = "cim-service"
DEFAULT_MAX_HTML_ROWS = 5_000
DEFAULT_MAX_TOPICS = 5_000
_SEVERITIES = ("error", "warning", "info")


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat() + "Z"


def _findings(store: Any, submission_id: str, dataset_id: str, version: int) -> list[dict[str, Any]]:
    cur = store.read().execute(
        """SELECT f.check_kind, f.rule_id, f.severity, f.global_id, f.ifc_class,
                  coalesce(e.name, s.name) AS element_name, e.storey_name, f.expected, f.found, f.message
           FROM bim_check_findings f
           LEFT JOIN bim_elements e
             ON e.dataset_id = ? AND e.version = ? AND e.global_id = f.global_id
           LEFT JOIN (SELECT global_id, any_value(name) AS name FROM bim_spatial
                      WHERE dataset_id = ? AND version = ? GROUP BY global_id) s
             ON s.global_id = f.global_id
           WHERE f.submission_id = ?
           ORDER BY CASE f.severity WHEN 'error' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END,
                    f.check_kind, f.rule_id, f.global_id NULLS FIRST, f.message""",
        [dataset_id, version, dataset_id, version, submission_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _model(store: Any, dataset_id: str, version: int) -> dict[str, Any] | None:
    row = (
        store.read()
        .execute(
            """SELECT ifc_schema, authoring_app, project_name, element_count, length_unit_m, georef,
                  origin_x, origin_y, origin_h
           FROM bim_models WHERE dataset_id = ? AND version = ?""",
            [dataset_id, version],
        )
        .fetchone()
    )
    if row is None:
        return None
    georef = json_value(row[5])
    origin = None if row[6] is None and row[7] is None else [row[6], row[7], row[8]]
    return {
        "ifc_schema": row[0],
        "authoring_app": row[1],
        "project_name": row[2],
        "element_count": row[3],
        "length_unit_m": row[4],
        "georef": georef if isinstance(georef, dict) else None,
        "origin": origin,
    }


def _summary(status: str, findings: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for f in findings:
        bucket = by_kind.setdefault(f["check_kind"], dict.fromkeys(_SEVERITIES, 0))
        bucket[f["severity"]] += 1
    rules = Counter((f["rule_id"], f["check_kind"], f["severity"]) for f in findings)
    by_rule = [
        {"rule_id": r, "check_kind": k, "severity": s, "count": n}
        for (r, k, s), n in sorted(
            rules.items(), key=lambda item: (_SEVERITIES.index(item[0][2]), item[0][0])
        )
    ]
    errors = sum(f["severity"] == "error" for f in findings)
    checked = status not in ("submitted", "checked")
    return {
        "passed": (errors == 0) if checked else None,
        "errors": errors,
        "warnings": sum(f["severity"] == "warning" for f in findings),
        "infos": sum(f["severity"] == "info" for f in findings),
        "findings": len(findings),
        "by_check_kind": by_kind,
        "by_rule": by_rule,
    }


def report_json(store: Any, submission_id: str) -> dict[str, Any]:
    """The JSON report of a submission (see ``REPORT_SCHEMA_PATH``); raises NotFoundError."""
    sub = get_submission(store, submission_id)
    findings = _findings(store, sub.id, sub.dataset_id, sub.version)
    return {
        "schema": REPORT_SCHEMA_ID,
        "schema_version": REPORT_SCHEMA_VERSION,
        "created_at": _ts(datetime.now(UTC)),
        "tool": {"name": TOOL_NAME, "version": __version__},
        "submission": {
            "id": sub.id,
            "project": sub.project,
            "stage": sub.stage,
            "dataset_id": sub.dataset_id,
            "version": sub.version,
            "file_sha256": sub.file_sha256,
            "file_name": sub.file_name,
            "status": sub.status,
            "submitted_by": sub.submitted_by,
            "submitted_at": _ts(sub.submitted_at),
            "checked_at": _ts(sub.checked_at),
            "note": sub.note,
        },
        "model": _model(store, sub.dataset_id, sub.version),
        "summary": _summary(sub.status, findings),
        "checks": dict(sub.summary or {}),
        "findings": findings,
        "events": [
            {
                "event_at": _ts(e.event_at),
                "actor": e.actor,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "comment": e.comment,
            }
            for e in events(store, sub.id)
        ],
    }


# -- HTML ---------------------------------------------------------------------------------------
_STAGE_ZH = {"drawing_review": "施工图审查", "handover": "竣工交付"}
_STATUS_ZH = {
    "submitted": "已提交",
    "checked": "已检查",
    "passed": "检查通过",
    "failed": "检查未通过",
    "accepted": "审查通过",
    "rejected": "退回",
}
_CSS = """
body{font-family:"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%;font-size:.85em}th,td{border:1px solid #bbb;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eee}.error{color:#b00020;font-weight:bold}
.warning{color:#a05a00}.info{color:#555}.status{font-weight:bold}code{font-size:.95em}
@media print{body{margin:0}h2{page-break-after:avoid}tr{page-break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return "" if value is None else html.escape(str(value), quote=True)


def _rows(cells: list[list[Any]], classes: list[str] | None = None) -> str:
    out = []
    for i, row in enumerate(cells):
        cls = f' class="{_e(classes[i])}"' if classes else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return "\n".join(out)


def render_html(report: dict[str, Any], *, max_rows: int = DEFAULT_MAX_HTML_ROWS) -> str:
    """A printable, self-contained HTML page of a :func:`report_json` report."""
    sub, summary, model = report["submission"], report["summary"], report["model"] or {}
    findings = report["findings"]
    status = sub["status"]
    head = [
        ["项目 Project", sub["project"]],
        ["阶段 Stage", f"{_STAGE_ZH.get(sub['stage'], '')} ({sub['stage']})"],
        ["提交 Submission", sub["id"]],
        ["文件 File", f"{sub['file_name'] or ''} (SHA-256 {sub['file_sha256']})"],
        [
            "模型 Model",
            f"{sub['dataset_id']} v{sub['version']} · {model.get('ifc_schema') or ''} · "
            f"{model.get('authoring_app') or ''}",
        ],
        ["提交人 Submitted by", f"{sub['submitted_by'] or ''} · {sub['submitted_at']}"],
        ["检查时间 Checked at", sub["checked_at"] or "—"],
    ]
    counts = f"错误 errors {summary['errors']} · 警告 warnings {summary['warnings']} · 提示 infos {summary['infos']}"
    shown = findings[:max_rows]
    more = (
        f"<p>Showing {len(shown)} of {len(findings)} findings; the JSON and BCF reports carry all.</p>"
        if len(findings) > len(shown)
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        f"<title>BIM 审查报告 {_e(sub['id'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>BIM 模型审查报告 / BIM review report — {_e(sub['project'])}</h1>",
        f'<p class="status {_e(status)}">状态 Status: {_e(_STATUS_ZH.get(status, status))} ({_e(status)})'
        f" · {_e(counts)}</p>",
        "<table>" + _rows(head) + "</table>",
        "<h2>规则汇总 Rules</h2>",
        "<table><tr><th>规则 Rule</th><th>检查 Check</th><th>级别 Severity</th><th>数量 Count</th></tr>",
        _rows(
            [[r["rule_id"], r["check_kind"], r["severity"], r["count"]] for r in summary["by_rule"]],
            [r["severity"] for r in summary["by_rule"]],
        ),
        "</table>",
        "<h2>问题清单 Findings</h2>",
        more,
        "<table><tr><th>#</th><th>级别</th><th>规则</th><th>构件 Element</th><th>楼层 Storey</th>"
        "<th>要求 Expected</th><th>实际 Found</th><th>说明 Message</th></tr>",
        _rows(
            [
                [
                    i,
                    f["severity"],
                    f["rule_id"],
                    " ".join(str(x) for x in (f["ifc_class"], f["element_name"], f["global_id"]) if x),
                    f["storey_name"],
                    f["expected"],
                    f["found"],
                    f["message"],
                ]
                for i, f in enumerate(shown, 1)
            ],
            [f["severity"] for f in shown],
        ),
        "</table>",
        "<h2>审查记录 History</h2>",
        "<table><tr><th>时间 Time (UTC)</th><th>人员 Actor</th><th>从 From</th><th>到 To</th><th>意见 Comment</th></tr>",
        _rows(
            [
                [e["event_at"], e["actor"], e["from_status"], e["to_status"], e["comment"]]
                for e in report["events"]
            ]
        ),
        "</table>",
        f"<p><small>{_e(report['tool']['name'])} {_e(report['tool']['version'])} · {_e(report['created_at'])}</small></p>",
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def report_html(store: Any, submission_id: str, *, max_rows: int = DEFAULT_MAX_HTML_ROWS) -> str:
    """The printable HTML report of a submission."""
    return render_html(report_json(store, submission_id), max_rows=max_rows)


# -- BCF ----------------------------------------------------------------------------------------
def _topics(findings: list[dict[str, Any]], severities: tuple[str, ...]) -> list[list[dict[str, Any]]]:
    """Findings grouped into topics: one per (rule, element); one per finding without an element."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for i, f in enumerate(findings):
        if f["severity"] not in severities:
            continue
        key = (f["check_kind"], f["rule_id"], f["global_id"] or f"#{i}")
        groups.setdefault(key, []).append(f)
    return list(groups.values())


def _project_guid(store: Any, dataset_id: str, version: int) -> str | None:
    row = (
        store.read()
        .execute(
            "SELECT global_id FROM bim_spatial WHERE dataset_id = ? AND version = ? AND ifc_class = 'IfcProject' LIMIT 1",
            [dataset_id, version],
        )
        .fetchone()
    )
    return row[0] if row else None


def write_bcf(
    store: Any,
    submission_id: str,
    path: str | Path,
    *,
    severities: tuple[str, ...] = ("error", "warning"),
    max_topics: int = DEFAULT_MAX_TOPICS,
) -> int:
    """Write the submission's findings as a BCF 2.1 zip at ``path``; returns the number of topics."""
    import bcf.v2.model as mdl
    from bcf.v2.bcfxml import BcfXml
    from bcf.v2.visinfo import VisualizationInfoHandler
    from xsdata.models.datatype import XmlDateTime

    report = report_json(store, submission_id)
    sub = report["submission"]
    project_guid = _project_guid(store, sub["dataset_id"], sub["version"])
    file_date = XmlDateTime.from_datetime(datetime.fromisoformat(sub["submitted_at"].rstrip("Z")))
    bcf = BcfXml.create_new(project_name=f"{sub['project']} {sub['id']}")
    topics = _topics(report["findings"], severities)[:max_topics]
    for group in topics:
        first = group[0]
        element = " ".join(str(x) for x in (first["ifc_class"], first["element_name"]) if x)
        title = f"[{first['rule_id']}] {element or first['message']}"[:200]
        lines = [
            f"{f['message']}\n要求 expected: {f['expected'] or '—'}\n实际 found: {f['found'] or '—'}"
            for f in group
        ]
        if first["storey_name"]:
            lines.append(f"楼层 storey: {first['storey_name']}")
        severity = "error" if any(f["severity"] == "error" for f in group) else group[0]["severity"]
        topic = bcf.add_topic(
            title=title,
            description="\n\n".join(lines),
            author=TOOL_NAME,
            topic_type="Error" if severity == "error" else severity.capitalize(),
            topic_status="Open",
        )
        topic.topic.priority = severity
        topic.topic.labels = [first["check_kind"], first["rule_id"]]
        topic.topic.stage = sub["stage"]
        topic.header = mdl.Header(
            file=[
                mdl.HeaderFile(
                    filename=sub["file_name"], date=file_date, ifc_project=project_guid, is_external=True
                )
            ]
        )
        if first["global_id"]:
            visinfo = mdl.VisualizationInfo(
                guid=str(uuid.uuid4()),
                components=mdl.Components(
                    selection=mdl.ComponentSelection(component=[mdl.Component(ifc_guid=first["global_id"])]),
                    visibility=mdl.ComponentVisibility(default_visibility=True),
                ),
            )
            topic.add_visinfo_handler(VisualizationInfoHandler(visinfo))
    bcf.save(Path(path))
    bcf.close()
    return len(topics)


def bcf_bytes(store: Any, submission_id: str, **kwargs: Any) -> bytes:
    """The BCF 2.1 zip of :func:`write_bcf` as bytes (for a download response)."""
    with tempfile.TemporaryDirectory(prefix="cim-bcf-") as tmp:
        path = Path(tmp) / f"{submission_id}.bcfzip"
        write_bcf(store, submission_id, path, **kwargs)
        return path.read_bytes()
