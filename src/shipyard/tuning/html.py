"""``tune-report.html``: the tuning report as one self-contained page.

No JavaScript, stylesheet, font or image is fetched: the style is inline and the
latency-vs-throughput chart is inline SVG (every measured point, each candidate's points joined
across concurrencies, the Pareto front, the winner, the SLO line), with a tooltip per point
(``<title>``). Every text from the report is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["render_html", "render_svg"]

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:13px;margin:.5rem 0}
td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:right;vertical-align:top}
td.l,th.l{text-align:left}tr.win{background:#fff3c4;font-weight:600}tr.fail{color:#999}
.ok{color:#1a7f37}.bad{color:#c62828}.note{color:#555}code{background:#f4f4f4;padding:0 3px}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""
_W, _H = 760, 440
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 20, 20, 46


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.3g}"


def render_svg(report: dict[str, Any]) -> str:
    """The chart: p99 latency (y) against throughput (x) for every measured point."""
    points = [
        (row, p)
        for row in report["candidates"]
        for p in row["points"]
        if p["p99_ms"] is not None and p["rps"] > 0
    ]
    slo = report["goal"]["slo_p99_ms"]
    if not points:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="40"><text x="4"'
            ' y="24">no point was measured</text></svg>'
        )
    max_x = max(p["rps"] for _r, p in points) * 1.08
    p99s = [p["p99_ms"] for _r, p in points] + ([slo] if slo else [])
    lo_y, hi_y = min(p99s), max(p99s)
    log = hi_y / max(lo_y, 1e-9) > 20
    if log:
        lo_y, hi_y = (
            10 ** math.floor(math.log10(max(lo_y, 1e-3))),
            10 ** math.ceil(math.log10(hi_y)),
        )
    else:
        lo_y, hi_y = 0.0, hi_y * 1.1
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(value: float) -> float:
        return float(_LEFT + plot_w * value / max_x)

    def y(value: float) -> float:
        if log:
            frac = (math.log10(max(value, lo_y)) - math.log10(lo_y)) / (
                math.log10(hi_y) - math.log10(lo_y)
            )
        else:
            frac = (value - lo_y) / (hi_y - lo_y or 1.0)
        return _TOP + plot_h * (1 - frac)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}"'
        f' viewBox="0 0 {_W} {_H}" role="img" aria-label="p99 latency against throughput">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa"'
        ' stroke="#ccc"/>',
    ]
    for tick in _ticks(0, max_x):
        out.append(
            f'<line x1="{x(tick):.1f}" y1="{_TOP}" x2="{x(tick):.1f}" y2="{_TOP + plot_h}"'
            ' stroke="#eee"/>'
            f'<text x="{x(tick):.1f}" y="{_TOP + plot_h + 15}" text-anchor="middle">'
            f"{_fmt(tick)}</text>"
        )
    y_ticks = (
        [10**k for k in range(round(math.log10(lo_y)), round(math.log10(hi_y)) + 1)]
        if log
        else _ticks(lo_y, hi_y)
    )
    for tick in y_ticks:
        out.append(
            f'<line x1="{_LEFT}" y1="{y(tick):.1f}" x2="{_LEFT + plot_w}" y2="{y(tick):.1f}"'
            ' stroke="#eee"/>'
            f'<text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{_fmt(tick)}</text>'
        )
    out.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 8}" text-anchor="middle">throughput'
        " (requests/s)</text>"
        f'<text x="14" y="{_TOP + plot_h / 2}" text-anchor="middle"'
        f' transform="rotate(-90 14 {_TOP + plot_h / 2})">p99 latency (ms'
        f"{', log scale' if log else ''})</text>"
    )
    if slo:
        out.append(
            f'<line x1="{_LEFT}" y1="{y(slo):.1f}" x2="{_LEFT + plot_w}" y2="{y(slo):.1f}"'
            ' stroke="#c62828" stroke-dasharray="6 4"/>'
            f'<text x="{_LEFT + plot_w - 4}" y="{y(slo) - 5:.1f}" text-anchor="end"'
            f' fill="#c62828">SLO p99 {_fmt(slo)} ms</text>'
        )
    for row in report["candidates"]:  # each candidate's points joined across concurrencies
        line = [p for p in row["points"] if p["p99_ms"] is not None and p["rps"] > 0]
        if len(line) > 1:
            colour, width = ("#e69500", 2.5) if row["winner"] else ("#bbb", 1)
            coords = " ".join(f"{x(p['rps']):.1f},{y(p['p99_ms']):.1f}" for p in line)
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}"'
                f' stroke-width="{width}"/>'
            )
    front = sorted(report["pareto_front"], key=lambda f: f["rps"])
    if len(front) > 1:
        coords = " ".join(f"{x(f['rps']):.1f},{y(f['p99_ms']):.1f}" for f in front)
        out.append(
            f'<polyline points="{coords}" fill="none" stroke="#1f6feb" stroke-width="1.5"'
            ' stroke-dasharray="3 3"/>'
        )
    on_front = {(f["candidate"], f["concurrency"]) for f in front}
    for row, p in points:
        key = (row["id"], p["concurrency"])
        fill = "#e69500" if row["winner"] else ("#1f6feb" if key in on_front else "#888")
        radius = 5 if row["winner"] or key in on_front else 3.5
        tip = (
            f"#{row['id']} {row['label']}; concurrency {p['concurrency']}:"
            f" {p['rps']:,.0f} req/s, p99 {p['p99_ms']:.3g} ms"
        )
        out.append(
            f'<circle cx="{x(p["rps"]):.1f}" cy="{y(p["p99_ms"]):.1f}" r="{radius}"'
            f' fill="{fill}" fill-opacity="0.85"><title>{_e(tip)}</title></circle>'
        )
    legend = [("#e69500", "winner"), ("#1f6feb", "Pareto front"), ("#888", "other candidates")]
    for i, (colour, text) in enumerate(legend):
        lx = _LEFT + 10 + i * 130
        out.append(
            f'<circle cx="{lx}" cy="{_TOP + 12}" r="5" fill="{colour}"/>'
            f'<text x="{lx + 9}" y="{_TOP + 16}">{text}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _table(headers: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]], left: int) -> str:
    """``rows``: (css class, cells); the first ``left`` columns are left-aligned."""
    head = "".join(
        f'<th class="l">{_e(h)}</th>' if i < left else f"<th>{_e(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for css, cells in rows:
        tds = "".join(
            f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(cells)
        )
        body.append(f'<tr class="{css}">{tds}</tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render_html(report: dict[str, Any]) -> str:
    """The whole page."""
    goal = report["goal"]
    levels = goal["concurrency"]
    winner = report["winner"]
    met = report["met_slo"]
    verdict = (
        '<p class="bad"><b>SLO not met.</b> ' if met is False else '<p class="ok"><b>Winner.</b> '
    )
    rows = []
    for row in report["candidates"]:
        pts = {p["concurrency"]: p for p in row["points"]}
        cells = [str(row["id"]), _e(row["label"]), _e(row["explored"])]
        for level in levels:
            p = pts.get(level)
            cells.append(
                "-"
                if p is None
                else f"{p['rps']:,.0f}<br><small>p50 {_ms(p['p50_ms'])} / p99"
                f" {_ms(p['p99_ms'])}{' / errors ' + str(p['errors']) if p['errors'] else ''}"
                "</small>"
            )
        marks = [
            m
            for m, on in (
                ("winner", row["winner"]),
                ("current settings", row["baseline"]),
                ("Pareto", row["pareto"]),
                ("measured twice", row["finalist"]),
            )
            if on
        ]
        if row["status"] == "failed":
            marks.append(f"failed: {row['reason']}")
        changes = ", ".join(f"{k} = {v}" for k, v in row["changes"].items()) or "-"
        cells += [_e(row["score"]["summary"]), _e(changes), _e("; ".join(marks))]
        css = "win" if row["winner"] else ("fail" if row["status"] == "failed" else "")
        rows.append((css, cells))
    candidates = _table(
        [
            "#",
            "candidate",
            "explored",
            *[f"c={c} req/s" for c in levels],
            "score",
            "model.toml changes",
            "",
        ],
        rows,
        3,
    )
    variants = _table(
        ["variant", "status", "reason", "accuracy drop", "size", "made in"],
        [
            (
                "",
                [
                    _e(v["name"]),
                    _e(v["status"]),
                    _e(v["reason"] or "-"),
                    "-"
                    if not v["accuracy"]
                    else _e(f"{v['accuracy']['metric']} {v['accuracy']['drop']:.4g}"),
                    f"{v['size_bytes'] / 1024:,.0f} KiB" if v["size_bytes"] else "-",
                    f"{v['seconds']:.1f} s",
                ],
            )
            for v in report["variants"]
        ],
        3,
    )
    front = _table(
        ["candidate", "concurrency", "req/s", "p99 ms"],
        [
            (
                "",
                [f"#{f['candidate']}", str(f["concurrency"]), f"{f['rps']:,.0f}", _ms(f["p99_ms"])],
            )
            for f in report["pareto_front"]
        ],
        1,
    )
    engines = _table(
        ["engine", "best candidate", "score"],
        [
            (
                "",
                [_e(e["engine"]), f"#{e['candidate']} {_e(e['label'])}", _e(e["score"]["summary"])],
            )
            for e in report.get("engines", [])
        ],
        1,
    )
    hw = report["hardware"]
    notes = "".join(f"<li>{_e(n)}</li>" for n in report["notes"])
    budget = report["budget"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>shipyard tune: {_e(report["model"])}</title><style>{_STYLE}</style></head><body>
<h1>shipyard tune: {_e(report["model"])} v{_e(report["version"])}</h1>
<p>Goal: {_e(goal["objective"])}. Each candidate was served and loaded for
{_e(goal["duration_s"])} s per concurrency after {_e(goal["warmup_s"])} s of warm-up
({_e(goal["encoding"])} tensors; {_e(goal["load"])}). {budget["candidates"]} candidates in
{budget["used_s"]:.0f} s of a {budget["budget_s"]:.0f} s budget; the search
{_e(budget["search"])}.</p>
{verdict}{_e(winner["why"])}</p>
<p>Decision: {_e(report["decision"])}</p>
<h2>Latency against throughput</h2>
{render_svg(report)}
<h2>Best of each engine</h2>
{engines}
<h2>Every candidate</h2>
{candidates}
<h2>Pareto front (no other point has both more throughput and a lower p99)</h2>
{front}
<h2>Variants</h2>
{variants}
<h2>Notes</h2><ul class="note">{notes}</ul>
<p class="note">Measured on {_e(hw["cpu"])} ({_e(hw["logical_cores"])} logical cores),
ONNX Runtime {_e(hw["onnxruntime"])}, providers {_e(", ".join(hw["providers"]))};
{_e(report["created"])}, shipyard {_e(report["shipyard_version"])}.</p>
</body></html>
"""
