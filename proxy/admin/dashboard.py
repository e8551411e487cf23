"""``GET /`` on the admin listener: the migration at a glance, one server-rendered page.

No build step, no script, no asset from elsewhere: the chart is inline SVG drawn here, the
users table is searched with a plain GET form, and everything shown is HTML-escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from proxy.admin.common import CONFIG, services
from proxy.admin.report import gather
from proxy.admin.users import BadQuery, UserPage, find_users, iso, parse_query

WIDTH, HEIGHT, PAD = 760, 220, 36
BAR, LINE = "#2f6fdf", "#e8590c"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#1d232b;background:#f6f7f9}
h1{font-size:20px;margin:0 0 16px}h2{font-size:15px;margin:0 0 8px}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:16px}
.card{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:12px 16px;min-width:150px}
.big{font-size:28px;font-weight:600}.muted{color:#66707c}
.mode-cutover{color:#b42318}.mode-migrate{color:#1f7a3a}
table{border-collapse:collapse;background:#fff;width:100%}
td,th{border:1px solid #dde1e6;padding:4px 8px;text-align:left}
.row{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}.row>section{flex:1}
section{margin-bottom:16px}.error{color:#b42318;font-weight:600}
"""


def chart(series: list[dict[str, Any]]) -> str:
    """Inline SVG: bars for users migrated per day, a line for the cumulative total."""
    n = max(len(series), 1)
    top = max([s["migrated"] for s in series] + [1])
    cum_top = max([s["cumulative"] for s in series] + [1])
    step = (WIDTH - 2 * PAD) / n
    inner = HEIGHT - 2 * PAD
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="users migrated per day">',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#fff"/>',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}"'
        ' stroke="#99a1ab"/>',
    ]
    points = []
    for i, s in enumerate(series):
        h = inner * s["migrated"] / top
        x = PAD + i * step
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{HEIGHT - PAD - h:.1f}"'
            f' width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="{BAR}">'
            f"<title>{escape(s['day'])}: {s['migrated']} migrated</title></rect>"
        )
        points.append(f"{x + step / 2:.1f},{HEIGHT - PAD - inner * s['cumulative'] / cum_top:.1f}")
    parts.append(
        f'<polyline class="cumulative" fill="none" stroke="{LINE}" stroke-width="3"'
        f' points="{" ".join(points)}"/>'
    )
    if series:
        parts.append(
            f'<text x="{PAD}" y="{HEIGHT - 10}" font-size="11">{escape(series[0]["day"])}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 10}" font-size="11" text-anchor="end">'
            f"{escape(series[-1]['day'])}</text>"
            f'<text x="{PAD}" y="{PAD - 10}" font-size="11" fill="{BAR}">max {top}/day</text>'
            f'<text x="{WIDTH - PAD}" y="{PAD - 10}" font-size="11" fill="{LINE}"'
            f' text-anchor="end">total {series[-1]["cumulative"]}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _counts(title: str, counts: dict[str, int]) -> str:
    rows = (
        "".join(f"<tr><td>{escape(name)}</td><td>{n}</td></tr>" for name, n in counts.items())
        or '<tr><td colspan="2" class="muted">none</td></tr>'
    )
    return f"<section><h2>{escape(title)}</h2><table>{rows}</table></section>"


def _users(page: UserPage | None, params: dict[str, str], problem: str | None) -> str:
    q = escape(params.get("q", ""))
    form = (
        '<form method="get" action="/"><input name="q" id="q" placeholder="email, username'
        f' or legacy id" value="{q}" size="40"> <button type="submit">Search</button></form>'
    )
    if problem is not None:
        return f'{form}<p class="error">{escape(problem)}</p>'
    assert page is not None
    head = "<tr><th>email</th><th>username</th><th>legacy id</th><th>source</th>"
    head += "<th>migrated</th><th>last login</th><th>blocked</th></tr>"
    rows = (
        "".join(
            f"<tr><td>{escape(u.email or '')}</td><td>{escape(u.username or '')}</td>"
            f"<td>{escape(u.legacy_id or '')}</td><td>{escape(u.source)}</td>"
            f"<td>{iso(u.created_at)}</td><td>{iso(u.last_login_at) or ''}</td>"
            f"<td>{'yes' if u.blocked else ''}</td></tr>"
            for u in page.users
        )
        or '<tr><td colspan="7" class="muted">no users match</td></tr>'
    )
    more = ""
    if page.next_page:
        link = "/?" + urlencode({**params, "page": page.next_page})
        more = f'<p><a id="next" href="{escape(link)}">next page</a></p>'
    return f'{form}<table id="users">{head}{rows}</table>{more}'


async def dashboard(request: web.Request) -> web.Response:
    svc = services(request)
    config = request.app[CONFIG]
    stats = await gather(
        svc.store, days=30, readiness_days=config.admin.readiness_days, mode=svc.modes.current
    )
    params = {k: v for k, v in request.query.items() if k in ("q", "source", "page") and v}
    page, problem = None, None
    try:
        page = await find_users(svc.store, parse_query({**params, "per_page": "25"}))
    except BadQuery as exc:
        problem = str(exc)
    ready = stats["readiness"]
    share = "n/a" if ready["share"] is None else f"{ready['share'] * 100:.1f}%"
    mode = escape(stats["mode"])
    logins = stats["logins"]
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>authshim migration</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>authshim migration</h1>
<div class="cards">
<div class="card"><div class="muted">mode</div>
<div class="big mode-{mode}" id="mode">{mode}</div></div>
<div class="card"><div class="muted">cut-over readiness ({ready["days"]} days)</div>
<div class="big" id="readiness">{share}</div>
<div class="muted">{ready["migrated"]} of {ready["active"]} recent logins migrated</div></div>
<div class="card"><div class="muted">users migrated</div>
<div class="big" id="total">{stats["users"]["total"]}</div></div>
<div class="card"><div class="muted">logins (30 days)</div>
<div class="big">{logins["local"]} / {logins["forwarded"]}</div>
<div class="muted">answered locally / forwarded</div></div>
<div class="card"><div class="muted">upstream errors (30 days)</div>
<div class="big">{stats["upstream_errors"]}</div></div>
</div>
<section><h2>Users migrated per day (bars) and in total (line), last 30 days</h2>
{chart(stats["migrated_per_day"])}</section>
<div class="row">{_counts("Login outcomes", logins["by_outcome"])}
{_counts("Captures rejected", stats["captures_rejected"])}
{_counts("Users by source", stats["users"]["by_source"])}
{_counts("Resets", stats["resets"])}{_counts("Sign-ups", stats["signups"])}</div>
<section><h2>Users</h2>{_users(page, params, problem)}</section>
</body></html>"""
    return web.Response(
        text=html,
        content_type="text/html",
        status=400 if problem else 200,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
    )


# SECURITY: nothing but this page's own inline style; no script runs, nothing is fetched.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'"


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the dashboard page."""
    router.add_get("/", dashboard)
