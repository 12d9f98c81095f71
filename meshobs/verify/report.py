"""The static report of `meshobs verify --report DIR`: index.html listing every dashboard's
panels with a PNG chart each (from the range queries verify ran), status and query, plus
summary.json for CI. Everything is relative to DIR, so CI can publish it as an artefact."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from meshobs.verify.check import Outcome, summary
from meshobs.verify.png import bounds, chart, color

_MAX_LEGEND = 8


def _file_name(panel: list[Outcome]) -> str:
    query = panel[0].query
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{query.mesh}-{query.uid}") + ".png"


def _legend(labels: dict, ref: str, refs: int) -> str:
    shown = {k: v for k, v in labels.items() if k not in ("__name__", "cluster")}
    text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "value")
    return f"{ref}: {text}" if refs > 1 else text


def _status(outcome: Outcome) -> tuple[str, str]:
    if outcome.problems:
        return "fail", "; ".join(outcome.problems)
    if outcome.excused:
        return "note", "; ".join(outcome.excused)
    return "ok", f"{len(outcome.result)} series"


def _worst(panel: list[Outcome]) -> str:
    statuses = {_status(o)[0] for o in panel}
    return next(s for s in ("fail", "note", "ok") if s in statuses)


def _panel_html(panel: list[Outcome], image: str | None) -> str:
    """One panel: its chart (every target's series together, as Grafana draws them), legend with
    last values, and per target its status and query."""
    lines = [(o.query.ref, labels, points) for o in panel for labels, points in o.lines]
    parts = [f'<div class="panel {_worst(panel)}"><h3>{html.escape(panel[0].query.item)}</h3>']
    if image:
        t0, t1, low, high = bounds([points for _, _, points in lines])
        parts.append(f'<img src="{image}" alt="{html.escape(panel[0].query.item)}">'
                     f'<p class="axis">y from {low:.4g} to {high:.4g} over {t1 - t0:.0f}s</p>')
    legend = []
    for index, (ref, labels, points) in enumerate(lines[:_MAX_LEGEND]):
        last = points[-1][1] if points else float("nan")
        r, g, b = color(index)
        legend.append(f'<li><span class="swatch" style="background:rgb({r},{g},{b})"></span>'
                      f'{html.escape(_legend(labels, ref, len(panel)))}: <b>{last:.4g}</b></li>')
    if len(lines) > _MAX_LEGEND:
        legend.append(f"<li>… {len(lines) - _MAX_LEGEND} more series</li>")
    parts.append(f"<ul>{''.join(legend)}</ul>")
    for outcome in panel:
        status, text = _status(outcome)
        parts.append(f'<p class="status">[{html.escape(outcome.query.ref)}] {status}: {html.escape(text)}</p>'
                     f"<details><summary>query</summary><pre>{html.escape(outcome.expr)}</pre></details>")
    parts.append("</div>")
    return "".join(parts)


_STYLE = """body{font-family:sans-serif;margin:1em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:10px}.panel{border:1px solid #ccc;border-radius:4px;padding:6px;width:372px}
.panel h3{font-size:14px;margin:0 0 4px}.panel ul{font-size:11px;padding-left:14px;margin:4px 0}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}.fail{border-color:#d62728;background:#fff3f3}
.note{border-color:#bcbd22}.status,.axis{font-size:12px;margin:2px 0}.axis{color:#777}pre{white-space:pre-wrap;font-size:11px}"""


def write(outcomes: list[Outcome], folder: Path, prometheus_url: str) -> Path:
    """index.html, one PNG per panel, summary.json; returns the index path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "charts").mkdir(exist_ok=True)
    for stale in (folder / "charts").glob("*.png"):  # charts of panels an earlier run had
        stale.unlink()
    # panels in dashboard order, each with its targets' outcomes
    panels: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        if outcome.query.kind == "panel":
            panels.setdefault((outcome.query.source, outcome.query.uid), []).append(outcome)
    sections: dict[tuple[str, str], list[str]] = {}
    for panel in panels.values():
        query = panel[0].query
        image = None
        if any(o.lines for o in panel):
            image = f"charts/{_file_name(panel)}"
            (folder / image).write_bytes(chart([points for o in panel for _, points in o.lines]))
        sections.setdefault((query.mesh, f"{query.title} ({query.source})"), []).append(_panel_html(panel, image))
    rules = [o for o in outcomes if o.query.kind != "panel"]
    body = [f"<h1>meshobs verify</h1><p>Against {html.escape(prometheus_url)}: {html.escape(summary(outcomes))}.</p>"]
    for (mesh, title), panels in sections.items():
        body.append(f"<h2>{html.escape(mesh)}: {html.escape(title)}</h2><div class='grid'>{''.join(panels)}</div>")
    body.append("<h2>Rules</h2><table>")
    for outcome in rules:
        status, text = _status(outcome)
        body.append(f"<tr class='{status}'><td>{html.escape(outcome.query.source)}</td><td>{html.escape(outcome.query.item)}</td>"
                    f"<td>{status}</td><td>{html.escape(text)}</td></tr>")
    body.append("</table>")
    index = folder / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>meshobs verify</title>"
                     f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    entries = [{"where": o.query.where, "mesh": o.query.mesh, "kind": o.query.kind, "status": _status(o)[0],
                "problems": o.problems, "excused": o.excused, "series": len(o.result), "query": o.expr} for o in outcomes]
    (folder / "summary.json").write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    return index
