"""The dashboard (看板) and the printable quarterly report (季通报): server-rendered HTML with inline SVG.

Browsers cannot attach a bearer header to a page load, so besides `Authorization` the pages accept the same
token from an HttpOnly, SameSite=Strict cookie set by pasting it into the sign-in form (POST .../session).
"""
from __future__ import annotations

from html import escape
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import func, select

from common.auth import Principal, get_principal, principal_from_claims
from common.clock import Clock, get_clock
from common.deps import AppDb, AppSettings, AppVerifier
from common.errors import Problem, invalid
from svc_metrics.alerts import cases, service as alerts
from svc_metrics.alerts.models import Warning_
from svc_metrics.dashboard.svg import bullet, fmt, trend
from svc_metrics.kpis import measure, periods, service
from svc_metrics.surveys import results as survey_results
from svc_metrics.kpis.queries import Filters
from svc_metrics.kpis.models import Observation

router = APIRouter(prefix="/metrics/v1", tags=["dashboard 看板"])
COOKIE = "onenet_metrics_token"
STYLE = """
body{font-family:"Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:1.5rem;color:#263238}
h1{font-size:1.4rem;margin:0 0 .5rem} h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%} th,td{border-bottom:1px solid #cfd8dc;padding:.35rem .5rem;text-align:left;font-size:.9rem}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.status-met{color:#2e7d32}.status-warning{color:#b28704}.status-missed{color:#c62828}
form.picker{display:flex;gap:.75rem;align-items:end;flex-wrap:wrap;background:#f5f7f8;padding:.75rem;border-radius:6px}
label{display:flex;flex-direction:column;font-size:.85rem} select,input,button{font-size:1rem;padding:.3rem}
.legend{font-size:.8rem;color:#546e7a} a{color:#1565c0}
@media print{form.picker,.noprint{display:none} body{margin:0}}
"""


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
                        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                        f'<title>{escape(title)}</title><style>{STYLE}</style></head><body>{body}</body></html>',
                        status_code=status)


async def page_principal(request: Request, verifier: AppVerifier) -> Principal | None:
    """A dependency: the caller by the bearer header, else by the pages' cookie, else None (sign in)."""
    if request.headers.get("authorization"):
        return await get_principal(request)
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        claims = await verifier.verify(token)
    except Problem:
        return None
    return principal_from_claims(claims, token)


SIGN_IN_SCRIPT = """
document.getElementById('signin').addEventListener('submit', async function (e) {
  e.preventDefault();
  const f = e.target, err = document.getElementById('signin-error');
  err.textContent = '';
  try {
    let token = f.token.value.trim();
    if (!token) {  // the gateway's password grant (the page is reached through the gateway)
      const r = await fetch('/auth/v1/token', {method: 'POST',
        headers: {'Content-Type': 'application/x-www-form-urlencoded', 'Accept': 'application/json'},
        body: new URLSearchParams({grant_type: 'password', username: f.username.value, password: f.password.value})});
      const b = await r.json();
      if (!r.ok) throw new Error(b.detail || b.title || r.status);
      token = b.access_token;
    }
    const s = await fetch('/metrics/v1/dashboard/session', {method: 'POST', credentials: 'same-origin',
      headers: {'Authorization': 'Bearer ' + token, 'Accept': 'application/json',
                'Content-Type': 'application/json'},
      body: JSON.stringify({token: token, next: f.next.value})});
    const sb = await s.json();
    if (!s.ok) throw new Error(sb.detail || sb.title || s.status);
    location.assign(sb.next);
  } catch (x) {
    err.textContent = '登录失败 Sign-in failed: ' + x.message;
  }
});
"""


def sign_in(next_url: str) -> HTMLResponse:
    """The sign-in form: user name and password go to the gateway's POST /auth/v1/token (password grant); the
    token it returns is handed to POST .../dashboard/session, which keeps it in an HttpOnly, SameSite=Strict
    cookie for /metrics/v1/. A token can also be pasted (e.g. svc_metrics reached directly, without a gateway)."""
    return page("登录 · 指标看板", f"""<h1>指标看板 · 请登录</h1>
<p>评估机构、社区/街道工作人员或运维人员请登录。Sign in (evaluators, community or street staff, ops).</p>
<form id="signin" method="post" action="/metrics/v1/dashboard/session">
<input type="hidden" name="next" value="{escape(next_url)}">
<label>用户名 User name<input name="username" id="username" autocomplete="username"></label>
<label>密码 Password<input type="password" name="password" id="password" autocomplete="current-password"></label>
<details><summary>或粘贴访问令牌 Or paste an access token</summary>
<label>访问令牌 Access token<textarea name="token" id="token" rows="4" cols="60"></textarea></label></details>
<p><button type="submit" id="signin-button">登录并进入看板</button></p>
<p id="signin-error" role="alert" class="status-missed"></p></form>
<script>{SIGN_IN_SCRIPT}</script>""", status=401)


def sign_in_page(request: Request) -> HTMLResponse:
    """A browser (it asks for text/html) gets the sign-in form; any other client the API's usual 401 problem."""
    if "text/html" not in request.headers.get("accept", ""):
        raise Problem(401, "unauthenticated", ("请求缺少有效的访问令牌（Authorization: Bearer …）",
                                               "Missing or invalid bearer token (Authorization: Bearer …)"),
                      headers={"WWW-Authenticate": "Bearer"})
    return sign_in(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))


@router.post("/dashboard/session", include_in_schema=False)
async def session_(request: Request, verifier: AppVerifier):
    """Keep a token in the pages' cookie: from the sign-in script (JSON, through the gateway, which forwards JSON
    bodies only) or from the plain form (svc_metrics reached directly)."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise invalid("token", "missing", "缺少访问令牌", "A token is required")
    else:
        body = dict(await request.form())
    token = str(body.get("token") or "").strip()
    auth = request.headers.get("authorization", "")
    if not token and auth.lower().startswith("bearer "):
        token = auth[7:].strip()
    if not token:
        raise invalid("token", "missing", "缺少访问令牌", "A token is required")
    next = str(body.get("next") or "/metrics/v1/dashboard")
    claims = await verifier.verify(token)
    principal = principal_from_claims(claims, token)
    if principal.role not in service.READ_ROLES:
        raise Problem(403, "forbidden", ("当前角色无权查看看板", "Your role may not see the dashboard"))
    target = next if next.startswith("/metrics/v1/") and not next.startswith("/metrics/v1//") else "/metrics/v1/dashboard"
    if "application/json" in request.headers.get("accept", ""):
        resp: Response = JSONResponse({"next": target})
    else:
        resp = RedirectResponse(target, status_code=303)
    # The cookie lives as long as the token, so an expired one is simply gone and the form shows again.
    ttl = int(claims.get("exp", 0) - verifier.clock.timestamp()) if claims.get("exp") else 3600
    resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/metrics/v1/",
                    secure=request.url.scheme == "https", max_age=max(1, min(ttl, 12 * 3600)))
    return resp


async def _scope_options(session, principal: Principal) -> list[str]:
    """Every place that has observations, with its street and district, that the caller may see."""
    places = [r[0] for r in await session.execute(
        select(Observation.place).where(func.length(Observation.place) >= 12).distinct())]
    codes = {c for p in places for c in (p[:6], p[:9], p[:12], p[:15] if len(p) >= 15 else p[:12])}
    out = []
    for o in ["all", *sorted(codes)]:
        try:
            service.check_scope(principal, o)
        except Problem:
            continue
        out.append(o)
    return out


def default_scope(principal: Principal) -> str:
    """All places when the caller may see them, else the widest place in their own scope."""
    try:
        return service.check_scope(principal, "all")
    except Problem:
        places = sorted((v for k in ("district", "street", "community", "grid") for v in principal.scope_values(k)),
                        key=len)
        return places[0] if places else "all"


def _label(scope: str) -> str:
    return {6: "区", 9: "街道", 12: "社区", 15: "网格"}.get(len(scope), "全部") + ("" if scope == "all" else f" {scope}")


def _status_cell(item: dict[str, Any]) -> str:
    s = item.get("status")
    return f'<td class="status-{s}" data-status="{s or ""}">{escape(item.get("status_zh") or "无数据")}</td>'


def _picker(options: list[str], scope: str, period: str, kpi_code: str, codes: list[tuple[str, str]]) -> str:
    opts = "".join(f'<option value="{o}"{" selected" if o == scope else ""}>{escape(_label(o))}</option>'
                   for o in options)
    kopts = "".join(f'<option value="{c}"{" selected" if c == kpi_code else ""}>{escape(n)}</option>' for c, n in codes)
    return (f'<form class="picker" method="get" action="/metrics/v1/dashboard">'
            f'<label>范围 Scope<select name="scope" id="scope">{opts}</select></label>'
            f'<label>周期 Period<input name="period" id="period" value="{escape(period)}" '
            f'placeholder="2026-Q1 / 2026-03 / 2026-W10 / 2026-03-05"></label>'
            f'<label>趋势指标 Trend<select name="kpi" id="kpi">{kopts}</select></label>'
            f'<button type="submit" id="apply">查看</button></form>')


@router.get("/dashboard", response_class=HTMLResponse, summary="指标看板 Dashboard (HTML)")
async def dashboard(request: Request, db: AppDb, settings: AppSettings, scope: str | None = None, period: str | None = None,
                    kpi: str = "satisfaction_rate", clock: Clock = Depends(get_clock),
                    principal: Principal | None = Depends(page_principal)) -> HTMLResponse:
    if principal is None:
        return sign_in_page(request)
    if principal.role not in service.READ_ROLES:
        raise Problem(403, "forbidden", ("当前角色无权查看看板", "Your role may not see the dashboard"))
    f = Filters(scope=service.check_scope(principal, scope or default_scope(principal)))
    now = clock.now()
    p = periods.parse(period, now)
    async with db.session() as session:
        items = await service.evaluate_all(session, p, f, now, min_group=settings.survey_min_group)
        options = await _scope_options(session, principal)
        defn = await service.definition(session, kpi if any(i["code"] == kpi for i in items) else "satisfaction_rate")
        ovr = await service.overrides(session)
        series = [(q.label, (await measure.evaluate(session, defn, q, f, now, ovr, min_group=settings.survey_min_group)))
                  for q in p.trailing(6)]
        open_warnings = [w for w in (await session.execute(select(Warning_).where(Warning_.status == "open")
                                                           .order_by(Warning_.created_at.desc()).limit(200))).scalars()
                         if alerts.visible(principal, w) and (f.scope == "all" or w.scope.startswith(f.scope)
                                                              or f.scope.startswith(w.scope))]
    rows = "".join(
        f'<tr data-code="{i["code"]}"><td>{escape(i["name_zh"])}<br><span class="legend">{escape(i["name_en"])}</span></td>'
        f'<td class="num value" data-code="{i["code"]}">{fmt(i["value"])}</td><td>{escape(i["unit"])}</td>'
        f'<td class="num">{fmt((i.get("target") or {}).get("value"))}</td>'
        f'<td class="num">{fmt((i.get("baseline") or {}).get("value"))}</td>{_status_cell(i)}'
        f'<td>{bullet(i)}</td></tr>' for i in items)
    met = sum(1 for i in items if i["status"] == "met")
    judged = sum(1 for i in items if i["status"])
    target_now = (series[-1][1].get("target") or {}).get("value")
    warn_rows = "".join(f'<li>{escape(w.title_zh)}{" 〔整改〕" if w.rectification else ""}</li>' for w in open_warnings[:20])
    q = f"scope={escape(f.scope)}&amp;period={escape(p.label)}"
    body = f"""<h1>社区一网通办 · 考核指标看板</h1>
<p id="summary">{escape(_label(f.scope))} · {escape(p.label)} · 达标 <b id="met">{met}</b> / 已评估 {judged} 项</p>
{_picker(options, f.scope, p.label, defn.code, [(i["code"], i["name_zh"]) for i in items])}
<h2>{escape(defn.name_zh)} 趋势 <span class="legend">（虚线为目标）</span></h2>
{trend([(label, r["value"]) for label, r in series], target_now, unit=defn.unit)}
<h2>指标对照目标 <span class="legend">条形为实际值，深色竖线为目标，浅色竖线为基线</span></h2>
<table id="kpis"><thead><tr><th>指标</th><th>数值</th><th>单位</th><th>目标</th><th>基线</th><th>状态</th><th>对照</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>未处理预警 ({len(open_warnings)})</h2><ul id="warnings">{warn_rows or "<li>暂无</li>"}</ul>
<p class="noprint"><a href="/metrics/v1/kpis?{q}&amp;format=csv">导出 CSV</a> ·
<a href="/metrics/v1/kpis?{q}&amp;format=xlsx">导出 Excel</a> ·
<a href="/metrics/v1/report?scope={escape(f.scope)}&amp;period={escape(periods.of('quarter', p.first).label)}">季度通报</a></p>"""
    return page("指标看板", body)


def _survey_item(v: dict[str, Any]) -> str:
    """A survey of the quarterly report: its rates, or why they are withheld (surveys.results.withheld)."""
    head = f'<li data-survey="{escape(v["id"])}">{escape(v["title"])}：受邀 {v["invited"]} 人，作答 {v["respondents"]} 人，'
    if not v["shown"]:
        return f'{head}<span class="withheld">{escape(v["note"])}</span></li>'
    sat = f'，满意率 {fmt(v["satisfied_rate"])}%' if v["satisfied_rate"] is not None else ""
    return f'{head}回收率 {fmt(v["response_rate"])}%{sat}</li>'


@router.get("/report", response_class=HTMLResponse, summary="季度通报（可打印） Printable quarterly report")
async def report(request: Request, db: AppDb, settings: AppSettings, scope: str = "all", period: str | None = None,
                 clock: Clock = Depends(get_clock),
                 principal: Principal | None = Depends(page_principal)) -> HTMLResponse:
    if principal is None:
        return sign_in_page(request)
    if principal.role not in service.READ_ROLES:
        raise Problem(403, "forbidden", ("当前角色无权查看通报", "Your role may not see the report"))
    f = Filters(scope=service.check_scope(principal, scope))
    now = clock.now()
    p = periods.parse(period, now, default_kind="quarter")
    if p.kind != "quarter":
        p = periods.of("quarter", p.first)
    async with db.session() as session:
        mg = settings.survey_min_group
        items = await service.evaluate_all(session, p, f, now, min_group=mg)
        prev = {i["code"]: i for i in await service.evaluate_all(session, p.previous(), f, now, min_group=mg)}
        warnings = [w for w in (await session.execute(select(Warning_).where(Warning_.period == p.label)
                                                      .order_by(Warning_.kind, Warning_.scope))).scalars()
                    if alerts.visible(principal, w) and (f.scope == "all" or w.scope.startswith(f.scope))]
        rect_cases = [c for c in await cases.list_visible(session, principal, None, None)
                      if c.period == p.label and (f.scope == "all" or c.scope.startswith(f.scope))]
        surveys = await survey_results.of_quarter(session, f.scope, p.label, mg)
    rows = "".join(
        f'<tr><td>{escape(i["name_zh"])}</td><td class="num value" data-code="{i["code"]}">{fmt(i["value"])}</td>'
        f'<td>{escape(i["unit"])}</td><td class="num">{fmt(prev[i["code"]]["value"])}</td>'
        f'<td class="num">{fmt((i.get("target") or {}).get("value"))}</td>'
        f'<td>{escape(str((i.get("target") or {}).get("source") or ""))}</td>{_status_cell(i)}</tr>' for i in items)
    missed = [i for i in items if i["status"] == "missed"]
    bottom = [w for w in warnings if w.kind == "bottom_decile"]
    body = f"""<h1>{escape(p.label)} 季度通报 · {escape(_label(f.scope))}</h1>
<p>统计区间（北京时间）{p.first.isoformat()} 至 {(p.after).isoformat()}（不含）；生成时间 {now.astimezone(periods.SHANGHAI).strftime('%Y-%m-%d %H:%M')}。
数值由平台事件计算，非人工填报。</p>
<h2>一、指标完成情况</h2>
<table id="report"><thead><tr><th>指标</th><th>本季</th><th>单位</th><th>上季</th><th>目标</th><th>目标依据</th><th>状态</th></tr></thead>
<tbody>{rows}</tbody></table>
<h2>二、未达标指标（{len(missed)} 项）</h2><ul>{"".join(f"<li>{escape(i['name_zh'])}：{fmt(i['value'])}{escape(i['unit'])}，目标 {fmt(i['target']['value'])}</li>" for i in missed) or "<li>无</li>"}</ul>
<h2>三、整改事项（满意度低于 80%）</h2><ul id="rectifications">{"".join(f'<li data-case="{escape(c.id)}">{escape(c.reason_zh)}（{cases.STATUS_ZH[c.status]}）</li>' for c in rect_cases) or "<li>无</li>"}</ul>
<h2>四、排名后 10% 的社区</h2><ul>{"".join(f"<li>{escape(w.title_zh)}</li>" for w in bottom) or "<li>无</li>"}</ul>
<h2>五、问卷测评（满意度测评 · 需求调研）</h2><ul id="surveys">{"".join(map(_survey_item, surveys)) or "<li>无</li>"}</ul>
<p class="noprint"><a href="/metrics/v1/dashboard?scope={escape(f.scope)}&amp;period={escape(p.label)}">返回看板</a></p>"""
    return page(f"{p.label} 季度通报", body)
