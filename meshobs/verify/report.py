"""The static report of `meshobs verify --report DIR`: index.html listing every dashboard's
panels with a PNG chart each (from the range queries verify ran), status and query, plus
summary.json for CI. Everything is relative to DIR, so CI can publish it as an artefact."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from meshobs.verify.check import Outcome
from meshobs.verify.png import bounds, chart, color

_MAX_LEGEND = 8


def _file_name(outcome: Outcome) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{outcome.query.mesh}-{outcome.query.uid}-{outcome.query.ref}") + ".png"


def _legend(labels: dict) -> str:
    shown = {k: v for k, v in labels.items() if k not in ("__name__", "cluster")}
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "value")


def _status(outcome: Outcome) -> tuple[str, str]:
    if outcome.problems:
        return "fail", "; ".join(outcome.problems)
    if outcome.excused:
        return "note", "; ".join(outcome.excused)
    return "ok", f"{len(outcome.result)} series"


def _panel_html(outcome: Outcome, image: str | None) -> str:
    status, text = _status(outcome)
    parts = [f'<div class="panel {status}"><h3>{html.escape(outcome.query.item)} '
             f'<small>[{html.escape(outcome.query.ref)}]</small></h3>']
    if image:
        t0, t1, low, high = bounds([points for _, points in outcome.lines])
        parts.append(f'<img src="{image}" alt="{html.escape(outcome.query.item)}">'
                     f'<p class="axis">y from {low:.4g} to {high:.4g} over {t1 - t0:.0f}s</p>')
    legend = []
    for index, (labels, points) in enumerate(outcome.lines[:_MAX_LEGEND]):
        last = points[-1][1] if points else float("nan")
        r, g, b = color(index)
        legend.append(f'<li><span class="swatch" style="background:rgb({r},{g},{b})"></span>'
                      f'{html.escape(_legend(labels))}: <b>{last:.4g}</b></li>')
    if len(outcome.lines) > _MAX_LEGEND:
        legend.append(f"<li>… {len(outcome.lines) - _MAX_LEGEND} more series</li>")
    parts.append(f"<ul>{''.join(legend)}</ul>")
    parts.append(f'<p class="status">{status}: {html.escape(text)}</p>')
    parts.append(f"<details><summary>query</summary><pre>{html.escape(outcome.expr)}</pre></details></div>")
    return "".join(parts)


_STYLE = """body{font-family:sans-serif;margin:1em;color:#222}
.grid{display:flex;flex-wrap:wrap;gap:10px}.panel{border:1px solid #ccc;border-radius:4px;padding:6px;width:372px}
.panel h3{font-size:14px;margin:0 0 4px}.panel ul{font-size:11px;padding-left:14px;margin:4px 0}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}.fail{border-color:#d62728;background:#fff3f3}
.note{border-color:#bcbd22}.status,.axis{font-size:12px;margin:2px 0}.axis{color:#777}pre{white-space:pre-wrap;font-size:11px}"""


def write(outcomes: list[Outcome], folder: Path, prometheus_url: str) -> Path:
    """index.html, one PNG per panel target, summary.json; returns the index path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "charts").mkdir(exist_ok=True)
    sections: dict[tuple[str, str], list[str]] = {}
    for outcome in outcomes:
        query = outcome.query
        image = None
        if query.kind == "panel" and outcome.lines:
            image = f"charts/{_file_name(outcome)}"
            (folder / image).write_bytes(chart([points for _, points in outcome.lines]))
        if query.kind == "panel":
            sections.setdefault((query.mesh, f"{query.title} ({query.source})"), []).append(_panel_html(outcome, image))
    rules = [o for o in outcomes if o.query.kind != "panel"]
    failed = sum(1 for o in outcomes if o.problems)
    body = [f"<h1>meshobs verify</h1><p>{len(outcomes)} queries against {html.escape(prometheus_url)}: "
            f"{len(outcomes) - failed} ok, {failed} failed.</p>"]
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
    summary = [{"where": o.query.where, "mesh": o.query.mesh, "kind": o.query.kind, "status": _status(o)[0],
                "problems": o.problems, "excused": o.excused, "series": len(o.result), "query": o.expr} for o in outcomes]
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return index
