"""Survey-QC report writers: JSON (stable schema), CSV (Excel-friendly) and a self-contained HTML page.

Every finding names file, row, field, rule and value; each report also carries counts by rule and by
category.

JSON report format (stable)
---------------------------
The JSON form is the machine-readable contract for other tools. Its structure is documented field by
field in the JSON Schema (draft 2020-12) shipped next to this module, ``cim/qc/report.schema.json``
(``REPORT_SCHEMA_PATH``); its ``$id`` is ``REPORT_SCHEMA_ID`` and every report names it in ``"schema"``
with ``"schema_version"`` = ``REPORT_SCHEMA_VERSION``. Top-level keys: ``schema``, ``schema_version``,
``created_at``, ``tool``, ``dataset``, ``crs_in``, ``storage_crs``, ``sources``, ``tolerances``,
``summary``, ``rules`` (every catalogue rule, with its count), ``counts_by_category`` and ``findings``
(each exactly ``Finding.to_dict()``). A change that removes or re-types a field bumps the major
version; added fields bump the minor version.

The writers stream row by row, so a report with a million findings stays within modest memory; the
HTML page lists at most ``max_html_rows`` findings (errors first) and says that JSON/CSV carry all.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cim import __version__
from cim.qc.catalogue import RULES, Finding, Severity

REPORT_SCHEMA_ID = "https://cim-service.example/schemas/qc-report/1.0"
REPORT_SCHEMA_VERSION = "1.0"
REPORT_SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
TOOL_NAME = "cim-service"
DEFAULT_MAX_HTML_ROWS = 20_000

SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)
CSV_HEADER: tuple[str, ...] = (
    "rule_id", "severity", "rule_title_zh", "file", "row", "feature_id", "field", "value", "message",
    "category", "layer",
)
_TITLE_ZH = {r.id: r.title_zh for r in RULES}


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _zero_counts() -> dict[str, int]:
    return dict.fromkeys(SEVERITIES, 0)


@dataclass(kw_only=True)
class QCReport:
    """The outcome of one QC run plus the context needed to read it (sources, CRS, tolerances)."""

    findings: list[Finding]
    sources: list[dict[str, Any]] = field(default_factory=list)  # file, layer, kind, rows, encoding
    crs_in: str | None = None
    storage_crs: str
    created_at: str = field(default_factory=_utc_now)
    tool_version: str = __version__
    dataset: str | None = None
    tolerances: dict[str, Any] = field(default_factory=dict)
    rules_run: list[str] = field(default_factory=lambda: [r.id for r in RULES])

    def counts_by_rule(self) -> dict[str, dict[str, int]]:
        """Rule id -> counts by severity; every catalogue rule is present (zeros allowed)."""
        counts: dict[str, dict[str, int]] = {r.id: _zero_counts() for r in RULES}
        for f in self.findings:
            bucket = counts.setdefault(f.rule_id, _zero_counts())
            bucket[f.severity] = bucket.get(f.severity, 0) + 1
        return counts

    def counts_by_category(self) -> dict[str, dict[str, int]]:
        """Category (``None`` -> ``'unknown'``) -> counts by severity, for categories with findings."""
        counts: dict[str, dict[str, int]] = {}
        for f in self.findings:
            bucket = counts.setdefault(f.category or "unknown", _zero_counts())
            bucket[f.severity] = bucket.get(f.severity, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> dict[str, int]:
        """Totals: errors, warnings, infos and all findings."""
        totals = _zero_counts()
        for f in self.findings:
            totals[f.severity] = totals.get(f.severity, 0) + 1
        return {
            "errors": totals[Severity.ERROR],
            "warnings": totals[Severity.WARNING],
            "infos": totals[Severity.INFO],
            "findings": len(self.findings),
        }

    @property
    def passed(self) -> bool:
        """True when no finding is an error."""
        return not any(f.severity == Severity.ERROR for f in self.findings)

    def rule_entries(self) -> list[dict[str, Any]]:
        """The catalogue as report entries: metadata, whether it ran and its finding count."""
        by_rule = self.counts_by_rule()
        ran = set(self.rules_run)
        return [
            {
                "id": r.id,
                "number": r.number,
                "severity": r.severity.value,
                "title_zh": r.title_zh,
                "title_en": r.title_en,
                "description": r.description,
                "run": r.id in ran,
                "count": sum(by_rule[r.id].values()),
            }
            for r in RULES
        ]

    def header_dict(self) -> dict[str, Any]:
        """Everything of the JSON report except ``findings``."""
        return {
            "schema": REPORT_SCHEMA_ID,
            "schema_version": REPORT_SCHEMA_VERSION,
            "created_at": self.created_at,
            "tool": {"name": TOOL_NAME, "version": self.tool_version},
            "dataset": self.dataset,
            "crs_in": self.crs_in,
            "storage_crs": self.storage_crs,
            "sources": [dict(s) for s in self.sources],
            "tolerances": dict(self.tolerances),
            "summary": self.summary(),
            "rules": self.rule_entries(),
            "counts_by_category": self.counts_by_category(),
        }

    def to_json_dict(self) -> dict[str, Any]:
        """The full JSON report as a dict (see ``report.schema.json``)."""
        return {**self.header_dict(), "findings": [f.to_dict() for f in self.findings]}


# --------------------------------------------------------------------------------------------- JSON


def write_json(report: QCReport, path: Path | str) -> Path:
    """Write the JSON report, streaming the findings one per line."""
    path = Path(path)
    head = json.dumps(report.header_dict(), ensure_ascii=False, indent=2)
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(head[: head.rindex("}")].rstrip())
        fh.write(',\n  "findings": [')
        sep = "\n    "
        for f in report.findings:
            fh.write(sep)
            fh.write(json.dumps(f.to_dict(), ensure_ascii=False))
            sep = ",\n    "
        fh.write("\n  ]\n}\n" if report.findings else "]\n}\n")
    return path


# ---------------------------------------------------------------------------------------------- CSV

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """Neutralise spreadsheet formulas: prefix ``'`` to text starting with = + - @ (tab, CR) unless numeric."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _csv_row(f: Finding) -> list[object]:
    cells: list[object] = [
        f.rule_id, f.severity, _TITLE_ZH.get(f.rule_id, ""), f.file, f.row, f.feature_id, f.field,
        f.value, f.message, f.category, f.layer,
    ]
    return ["" if c is None else csv_safe(c) for c in cells]


def write_csv(report: QCReport, path: Path | str) -> Path:
    """Write one CSV row per finding, UTF-8 with BOM so Excel shows Chinese correctly."""
    path = Path(path)
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_HEADER)
        for f in report.findings:
            writer.writerow(_csv_row(f))
    return path


# --------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.boxes{display:flex;gap:1rem;margin:1rem 0}
.box{padding:.8rem 1.2rem;border-radius:6px;min-width:8rem;color:#fff}
.box b{display:block;font-size:1.8rem}
.error{background:#c0392b}.warning{background:#d68910}.info{background:#2e86c1}.total{background:#555}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}table.sortable th{cursor:pointer}
td.num{text-align:right}tr.zero td{color:#999}
tr.sev-error td:nth-child(3){color:#c0392b;font-weight:bold}tr.sev-warning td:nth-child(3){color:#b9770e}
tr.sev-info td:nth-child(3){color:#2e86c1}
.note{background:#fff3cd;border:1px solid #e0c36b;padding:.6rem 1rem}
.pass{color:#1e8449;font-weight:bold}.fail{color:#c0392b;font-weight:bold}
"""

_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th, col){
  th.addEventListener('click', function(){
    var body = th.closest('table').tBodies[0], rows = Array.from(body.rows);
    var asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
    rows.sort(function(a, b){
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y, 'zh-CN');
      return asc ? r : -r;
    });
    rows.forEach(function(r){ body.appendChild(r); });
  });
});
"""

_FINDING_COLUMNS = ("#", "规则 rule", "严重性 severity", "文件 file", "行 row", "要素 feature", "字段 field",
                    "值 value", "说明 message", "类别 category", "图层 layer")


def _e(value: object) -> str:
    """HTML-escape any value; ``None`` becomes an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def _row(cells: Sequence[object], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    tds = "".join(f'<td class="num">{c}</td>' if isinstance(c, int) else f"<td>{_e(c)}</td>" for c in cells)
    return f"<tr{attr}>{tds}</tr>\n"


def _table_head(headers: Sequence[str], cls: str = "") -> str:
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead><tbody>\n"


def _by_severity(findings: Sequence[Finding], limit: int) -> Iterator[Finding]:
    """Up to ``limit`` findings, errors first, then warnings, infos and the rest; stable within each."""
    if limit <= 0:
        return
    emitted = 0
    order = [*SEVERITIES, None]
    for sev in order:
        for f in findings:
            if (f.severity == sev) if sev is not None else (f.severity not in SEVERITIES):
                yield f
                emitted += 1
                if emitted >= limit:
                    return


def _write_overview(fh: TextIO, report: QCReport) -> None:
    summary = report.summary()
    verdict = '<span class="pass">通过 passed</span>' if summary["errors"] == 0 else '<span class="fail">未通过 failed</span>'
    fh.write(f"<p>结论 Result: {verdict}</p>\n<div class=\"boxes\">\n")
    for cls, label, key in (("error", "错误 errors", "errors"), ("warning", "警告 warnings", "warnings"),
                            ("info", "提示 infos", "infos"), ("total", "合计 findings", "findings")):
        fh.write(f'<div class="box {cls}"><b>{summary[key]}</b>{label}</div>\n')
    fh.write("</div>\n")
    fh.write(_table_head(("项目 item", "值 value")))
    for label, value in (("数据集 dataset", report.dataset), ("生成时间 created", report.created_at),
                         ("输入坐标系 input CRS", report.crs_in), ("存储坐标系 storage CRS", report.storage_crs),
                         ("工具 tool", f"{TOOL_NAME} {report.tool_version}")):
        fh.write(_row((label, value)))
    fh.write("</tbody></table>\n")
    if report.sources:
        fh.write("<h2>数据源 Sources</h2>\n")
        fh.write(_table_head(("文件 file", "图层 layer", "类型 kind", "行数 rows", "编码 encoding")))
        for s in report.sources:
            fh.write(_row((s.get("file"), s.get("layer"), s.get("kind"), s.get("rows"), s.get("encoding"))))
        fh.write("</tbody></table>\n")
    if report.tolerances:
        fh.write("<h2>容差 Tolerances</h2>\n")
        fh.write(_table_head(("名称 name", "值 value")))
        for name, value in report.tolerances.items():
            shown = json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value
            fh.write(_row((name, shown)))
        fh.write("</tbody></table>\n")


def _write_counts(fh: TextIO, report: QCReport) -> None:
    fh.write("<h2>按规则统计 Counts by rule</h2>\n")
    fh.write(_table_head(("编号 no.", "规则 id", "名称", "title", "严重性 severity", "已运行 run", "数量 count"),
                         "sortable"))
    for entry in report.rule_entries():
        fh.write(_row((entry["number"], entry["id"], entry["title_zh"], entry["title_en"], entry["severity"],
                       "是 yes" if entry["run"] else "否 no", entry["count"]),
                      "" if entry["count"] else "zero"))
    fh.write("</tbody></table>\n<h2>按类别统计 Counts by category</h2>\n")
    fh.write(_table_head(("类别 category", "错误 errors", "警告 warnings", "提示 infos", "合计 total"), "sortable"))
    for category, counts in report.counts_by_category().items():
        fh.write(_row((category, counts["error"], counts["warning"], counts["info"], sum(counts.values()))))
    fh.write("</tbody></table>\n")


def write_html(
    report: QCReport,
    path: Path | str,
    max_html_rows: int = DEFAULT_MAX_HTML_ROWS,
    full_reports: Sequence[str] = (),
) -> Path:
    """Write a self-contained HTML page; the findings table stops after ``max_html_rows`` rows.

    ``full_reports`` names the JSON/CSV files to point readers to when the table is truncated.
    """
    path = Path(path)
    total = len(report.findings)
    title = f"管线数据质检报告 Survey QC report — {report.dataset}" if report.dataset else "管线数据质检报告 Survey QC report"
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write('<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n')
        fh.write('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
        fh.write(f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<h1>{_e(title)}</h1>\n")
        _write_overview(fh, report)
        _write_counts(fh, report)
        fh.write("<h2>问题清单 Findings</h2>\n")
        shown = min(total, max(max_html_rows, 0))
        if shown < total:
            names = "、".join(full_reports) if full_reports else "JSON / CSV"
            fh.write(
                f'<p class="note">本页仅列出前 {shown} 条（错误优先），共 {total} 条；完整结果见 {_e(names)} 报告。<br>'
                f"Showing the first {shown} of {total} findings (errors first); "
                f"the JSON and CSV reports ({_e(names)}) carry all findings.</p>\n"
            )
        fh.write(_table_head(_FINDING_COLUMNS, "sortable"))
        for i, f in enumerate(_by_severity(report.findings, shown), start=1):
            rule = f"{f.rule_id} {_TITLE_ZH[f.rule_id]}" if f.rule_id in _TITLE_ZH else f.rule_id
            cells = (i, rule, f.severity, f.file, f.row, f.feature_id, f.field, f.value, f.message, f.category,
                     f.layer)
            fh.write(_row(cells, f"sev-{f.severity}" if f.severity in SEVERITIES else ""))
        fh.write(f"</tbody></table>\n<script>{_JS}</script>\n</body>\n</html>\n")
    return path


# ------------------------------------------------------------------------------------------- all


def write_report(
    report: QCReport, out_dir: Path, stem: str = "qc-report", max_html_rows: int = DEFAULT_MAX_HTML_ROWS
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.csv`` and ``<stem>.html`` into ``out_dir``; return them by format."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "html": out_dir / f"{stem}.html"}
    write_json(report, paths["json"])
    write_csv(report, paths["csv"])
    write_html(report, paths["html"], max_html_rows, full_reports=(paths["json"].name, paths["csv"].name))
    return paths
