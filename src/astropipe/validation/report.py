"""The validation summary (a DVC metric) and the human-readable data docs (Markdown).

Both are deterministic: contract order, sorted JSON keys, relative paths as configured, no
timestamps or run ids, so the same tables give byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from astropipe.io.atomic import atomic_dir
from astropipe.io.tables import write_json
from astropipe.validation.runner import Outcome, TableReport

__all__ = [
    "summarize",
    "failure_line",
    "render_rows",
    "render_table",
    "render_index",
    "write_docs",
    "write_summary",
]


def _failure(o: Outcome) -> dict[str, Any]:
    return {
        "expectation": o.expectation,
        "column": o.column,
        "rule": o.rule,
        "observed": o.observed,
    }


def summarize(reports: Sequence[TableReport]) -> dict[str, Any]:
    """Build the summary: per table success, counts and failed expectations; overall success.

    Parameters
    ----------
    reports
        One report per table, in validation order.
    """
    tables: dict[str, Any] = {}
    for r in reports:
        entry: dict[str, Any] = {
            "path": r.path,
            "rows": r.rows,
            "success": r.success,
            "expectations": len(r.outcomes),
            "failed": len(r.failed),
            "failures": [_failure(o) for o in r.failed],
        }
        tables[r.table] = entry
    return {
        "success": all(r.success for r in reports),
        "tables_validated": len(reports),
        "expectations": sum(len(r.outcomes) for r in reports),
        "failed": sum(len(r.failed) for r in reports),
        "tables": tables,
    }


def _short(observed: Mapping[str, Any]) -> str:
    if "error" in observed:
        return str(observed["error"])
    if "unexpected_count" in observed:
        total = observed["element_count"]
        kind = "values"
        if "missing_count" in observed:
            total -= observed["missing_count"]
            kind = "non-null values"
        text = f"{observed['unexpected_count']} of {total} {kind} unexpected"
        if observed.get("unexpected_examples"):
            text += f", e.g. {json.dumps(observed['unexpected_examples'])}"
        return text
    if "observed_value" in observed:
        return f"observed {json.dumps(observed['observed_value'])}"
    return json.dumps(dict(observed), sort_keys=True) if observed else ""


def failure_line(reports: Sequence[TableReport], *, summary_path: str | None = None) -> str | None:
    """One line naming the first failure (table, column, expectation), or None if all passed."""
    failed = [(r, o) for r in reports for o in r.failed]
    if not failed:
        return None
    r, o = failed[0]
    col = f"column {o.column!r}" if o.column else "the table"
    # Name the offending artifact (a file, a cube step) when the contract labels its rows.
    items = o.observed.get("unexpected_items")
    where = items[0] if items else r.path
    more = int(o.observed.get("unexpected_count") or 0) - 1 if items else 0
    if more > 0:
        where += f" (and {more} more)"
    line = (
        f"{where}: table {r.table!r}, {col}: {o.expectation} failed ({o.rule}): "
        f"{_short(o.observed)}"
    )
    if len(failed) > 1:
        line += f"; {len(failed) - 1} more failure(s)"
    if summary_path:
        line += f"; see {summary_path}"
    return line


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.12g}"
    return _cell(str(v))


def render_rows(rows: pd.DataFrame) -> str:
    """Markdown table of a summary table (frames, cubes): every row, numbers to 12 digits."""
    cols = list(rows.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for rec in rows.itertuples(index=False):
        lines.append("| " + " | ".join(_value(v) for v in rec) + " |")
    return "\n".join(lines) + "\n"


def render_table(
    report: TableReport, *, sha256: str | None = None, rows: pd.DataFrame | None = None
) -> str:
    """Markdown data docs for one table: status line, one row per expectation, and (for a
    summary table such as frames or cubes) the summary rows the contract ran on."""
    status = "PASSED" if report.success else "FAILED"
    lines = [
        f"# Table `{report.table}` — {status}",
        "",
        f"- file: `{report.path}`",
        f"- rows: {report.rows}",
    ]
    if sha256:
        lines.append(f"- sha256: `{sha256}`")
    lines += [
        f"- expectations: {len(report.outcomes)} ({len(report.failed)} failed)",
        "",
        "| # | status | expectation | column | rule | observed |",
        "|---|---|---|---|---|---|",
    ]
    for o in report.outcomes:
        mark = "ok" if o.success else "**FAILED**"
        lines.append(
            f"| {o.order} | {mark} | `{o.expectation}` | {_cell(o.column or '')} | "
            f"{_cell(o.rule)} | {_cell(_short(o.observed))} |"
        )
    text = "\n".join(lines) + "\n"
    if rows is not None:
        text += f"\n## Summary rows ({len(rows)})\n\n" + render_rows(rows)
    return text


def render_index(reports: Sequence[TableReport]) -> str:
    """Markdown index of the data docs: one line per table."""
    ok = all(r.success for r in reports)
    lines = [
        f"# Validation — {'PASSED' if ok else 'FAILED'}",
        "",
        "| table | file | rows | expectations | failed | docs |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r.table} | `{r.path}` | {r.rows} | {len(r.outcomes)} | {len(r.failed)} | "
            f"[{r.table}.md]({r.table}.md) |"
        )
    return "\n".join(lines) + "\n"


def write_docs(
    reports: Sequence[TableReport],
    docs_dir: str | os.PathLike[str],
    *,
    hashes: Mapping[str, str] | None = None,
    rows: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Write ``index.md`` and ``<table>.md`` into ``docs_dir`` (replaced as a whole, atomically).

    ``hashes`` maps a table to its file's SHA-256; ``rows`` maps a summary contract (frames,
    cubes) to the table it ran on, listed in its page.
    """
    with atomic_dir(docs_dir) as tmp:
        tmp = Path(tmp)
        (tmp / "index.md").write_text(render_index(reports), encoding="utf-8")
        for r in reports:
            text = render_table(
                r, sha256=(hashes or {}).get(r.table), rows=(rows or {}).get(r.table)
            )
            (tmp / f"{r.table}.md").write_text(text, encoding="utf-8")
    return Path(docs_dir)


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the summary JSON (stable, sorted keys) atomically."""
    return write_json(dict(summary), path)
