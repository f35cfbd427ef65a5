"""summary.md and summary.html, both rendered from the summary dict.

The HTML page is a single self-contained file: its charts are inline SVG drawn
here, with no script and nothing fetched from elsewhere, so that it opens the
same from a laptop, a mail attachment or an air-gapped host.
"""

from __future__ import annotations

from html import escape
from typing import Any, Callable, Optional, Sequence

Cell = Any
#: (caption, column headers, rows)
Table = tuple[str, Sequence[str], Sequence[Sequence[Cell]]]


def _fmt(value: Cell) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


# --- the tables, shared by both renderings ---------------------------------


def _sections(s: dict[str, Any]) -> list[tuple[str, str, list[Table]]]:
    """(title, introduction, tables) for each section of the summary."""
    lines, logins, captcha, csrf, req = s["lines"], s["logins"], s["captcha"], s["csrf"], s["requests"]
    t = s["thresholds"]

    overview: Table = (
        "Totals",
        ["", "value"],
        [
            ["files read", s["input"]["files"]],
            ["lines", lines["total"]],
            ["events", lines["events"]],
            ["bad lines", lines["bad"]],
            ["first event", s["window"]["first_event"]],
            ["last event", s["window"]["last_event"]],
        ]
        + [[f"events: {k}", v] for k, v in sorted(s["events_by_kind"].items())],
    )
    bad: Table = ("Bad lines by cause", ["cause", "lines"], [[k, v] for k, v in lines["bad_by_cause"].items()])
    samples: Table = (
        "Some bad lines as read (shortened)",
        ["file", "cause", "line"],
        [[r["file"].rsplit("/", 1)[-1], r["cause"], r["line"][:120]] for r in s["bad_line_samples"]],
    )

    brute: Table = (
        "Addresses that look like brute force",
        ["address", "failures", "accounts", "peak hour", "peak-hour failures", "peak-hour accounts", "flagged by"],
        [
            [r["client_ip"], r["failures"], r["distinct_accounts"], r["peak_hour"],
             r["peak_hour_failures"], r["peak_hour_accounts"], r["flagged_by"]]
            for r in logins["bruteforce_addresses"]
        ],
    )
    by_reason: Table = ("Failed logins by reason", ["reason", "failures"], [[k, v] for k, v in logins["failed_by_reason"].items()])
    addresses: Table = (
        "Failed logins per address",
        ["address", "failures", "accounts", "bad_credentials", "captcha", "invalid_form", "brute force"],
        [
            [r["client_ip"], r["failures"], r["distinct_accounts"], r["bad_credentials"],
             r["captcha"], r["invalid_form"], r["bruteforce"]]
            for r in logins["top_addresses"]
        ],
    )
    accounts: Table = (
        "Failed logins per account",
        ["account", "failures", "addresses"],
        [[r["account"], r["failures"], r["distinct_addresses"]] for r in logins["top_accounts"]],
    )

    modes: Table = (
        "Captchas per mode",
        ["mode", "issued", "ok", "fail", "wrong", "expired", "missing", "solve rate"],
        [
            [m, r["issued"], r["ok"], r["fail"], r["fail_wrong"], r["fail_expired"],
             r["fail_missing"], _pct(r["solve_rate"])]
            for m, r in sorted(captcha["by_mode"].items())
        ],
    )
    noisy: Table = (
        "Addresses with many failed captchas",
        ["address", "failures", "peak hour", "peak-hour failures", "modes"],
        [
            [r["client_ip"], r["failures"], r["peak_hour"], r["peak_hour_failures"], r["modes"]]
            for r in captcha["failing_addresses"]
        ],
    )

    csrf_reason: Table = ("By reason", ["reason", "rejections"], [[k, v] for k, v in csrf["by_reason"].items()])
    csrf_origin: Table = (
        "By Origin header",
        ["origin", "rejections", "reasons"],
        [[r["origin"], r["rejections"], r["reasons"]] for r in csrf["by_origin"]],
    )

    routes: Table = (
        "Busiest routes",
        ["path", "requests", "p50 ms", "p95 ms", "p99 ms", "≥400", "≥500"],
        [
            [r["path"], r["requests"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
             _pct(r["error_rate_ge400"]), _pct(r["error_rate_ge500"])]
            for r in req["top_routes"]
        ],
    )
    limited: Table = (
        "Rate-limited requests by scope",
        ["scope", "events", "addresses"],
        [[r["scope"], r["events"], r["addresses"]] for r in s["rate_limited"]],
    )

    return [
        ("Overview", f"Input: {s['input']['events']} ({s['input']['glob']}). Times are UTC.", [overview]),
        ("Bad lines", "Lines that were not a version 1 event, by the first cause that applies; a few of them as read.", [bad, samples]),
        (
            "Failed logins",
            f"{logins['failed']} failed and {logins['ok']} successful logins. An address counts as brute force "
            f"when within one UTC hour it fails ≥ {t['bruteforce_min_failures']} logins or fails on "
            f"≥ {t['bruteforce_min_accounts']} distinct accounts.",
            [brute, by_reason, addresses, accounts],
        ),
        (
            "Captchas",
            f"Solve rate = ok / (ok + fail); overall {_pct(captcha['solve_rate'])}. Addresses listed below "
            f"failed ≥ {t['captcha_fail_threshold']} captchas within one UTC hour.",
            [modes, noisy],
        ),
        ("CSRF rejections", f"{csrf['rejections']} rejections, by reason and by Origin header.", [csrf_reason, csrf_origin]),
        (
            "Requests per route",
            f"{req['total']} requests over {req['routes']} paths, busiest first. Latency percentiles are "
            f"{req['percentiles']}; error rates are over all requests of the path (≥400 includes ≥500).",
            [routes],
        ),
        (
            "Rate limiting and session store",
            f"Session store errors: {s['session_store_errors']}.",
            [limited],
        ),
    ]


# --- Markdown ---------------------------------------------------------------


def _md_cell(value: Cell) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    caption, headers, rows = table
    if not rows:
        return f"**{caption}**: _none_\n"
    out = [f"**{caption}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def render_markdown(summary: dict[str, Any]) -> str:
    parts = [f"# Portico security events — report\n\nGenerated {summary['generated_at']}.\n"]
    for title, intro, tables in _sections(summary):
        parts.append(f"## {title}\n\n{intro}\n")
        parts += [_md_table(t) for t in tables]
    return "\n".join(parts)


# --- HTML and SVG -------------------------------------------------------------


def svg_bars(
    title: str,
    items: Sequence[tuple[str, float]],
    value_label: Callable[[float], str] = lambda v: f"{v:g}",
    highlight: Sequence[str] = (),
    max_value: Optional[float] = None,
) -> str:
    """A horizontal bar chart as an inline SVG element.

    ``highlight`` names labels drawn in the alert colour; ``max_value`` fixes
    the scale (1.0 for rates) instead of taking the largest value.
    """
    row_h, label_w, bar_w, value_w, top = 22, 210, 340, 80, 30
    width = label_w + bar_w + value_w
    height = top + row_h * max(len(items), 1) + 8
    scale = max_value if max_value else max((v for _, v in items), default=0) or 1
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<text x="0" y="18" class="t">{escape(title)}</text>',
    ]
    if not items:
        out.append(f'<text x="0" y="{top + 15}" class="l">no data</text>')
    for i, (label, value) in enumerate(items):
        y = top + i * row_h
        w = 0 if value <= 0 else max(1.0, bar_w * value / scale)
        cls = "bar hot" if label in highlight else "bar"
        short = label if len(label) <= 30 else label[:29] + "…"
        out.append(
            f'<text x="{label_w - 6}" y="{y + 15}" class="l" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" class="{cls}">'
            f"<title>{escape(label)}: {escape(value_label(value))}</title></rect>"
            f'<text x="{label_w + w + 5:.1f}" y="{y + 15}" class="v">{escape(value_label(value))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _html_table(table: Table) -> str:
    caption, headers, rows = table
    if not rows:
        return f"<h3>{escape(caption)}</h3><p><em>none</em></p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<h3>{escape(caption)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _charts(s: dict[str, Any]) -> dict[str, str]:
    """The chart shown at the top of each section, by section title."""
    logins, captcha, csrf, req = s["logins"], s["captcha"], s["csrf"], s["requests"]
    brute = [r["client_ip"] for r in logins["bruteforce_addresses"]]
    return {
        "Bad lines": svg_bars(
            "Bad lines by cause", [(k, v) for k, v in s["lines"]["bad_by_cause"].items()]
        ),
        "Failed logins": svg_bars(
            "Failed logins per address (red: brute force)",
            [(r["client_ip"], r["failures"]) for r in logins["top_addresses"]],
            highlight=brute,
        ),
        "Captchas": svg_bars(
            "Captcha solve rate per mode",
            [(m, r["solve_rate"] or 0.0) for m, r in sorted(captcha["by_mode"].items())],
            value_label=lambda v: f"{100 * v:.1f}%",
            max_value=1.0,
        ),
        "CSRF rejections": svg_bars(
            "CSRF rejections by reason", [(k, v) for k, v in csrf["by_reason"].items()]
        ),
        "Requests per route": svg_bars(
            "p95 latency per route (ms)",
            [(r["path"], r["p95_ms"] or 0.0) for r in req["top_routes"]],
            value_label=lambda v: f"{v:.1f}",
        ),
    }


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:960px;padding:0 1em;color:#222}
h1{font-size:1.5em}h3{font-size:1em;margin:1.2em 0 .2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0}th,td{padding:.25em .7em;border-bottom:1px solid #eee;text-align:left}
th{background:#f5f5f5}td{font-variant-numeric:tabular-nums}
svg{display:block;margin:.8em 0}svg .t{font-weight:600;font-size:13px}svg .l,svg .v{font-size:12px;fill:#333}
svg .bar{fill:#4a7bb7}svg .hot{fill:#c0392b}
"""


def render_html(summary: dict[str, Any]) -> str:
    charts = _charts(summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>Portico security events — report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Portico security events — report</h1>",
        f"<p>Generated {escape(summary['generated_at'])}.</p>",
    ]
    for title, intro, tables in _sections(summary):
        parts.append(f"<h2>{escape(title)}</h2><p>{escape(intro)}</p>")
        if title in charts:
            parts.append(charts[title])
        parts += [_html_table(t) for t in tables]
    parts.append("</body></html>\n")
    return "\n".join(parts)
