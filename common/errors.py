"""RFC 9457 problem details for every error path, with a stable machine `code` and the request id.

Services raise `Problem(...)` or one of its domain kinds (`NotFound`, `Forbidden`, `Conflict`,
`VersionConflict`, and `check_version` / `check_if_match`); being Problems, they are answered by the one handler
here (`common.lookup.get_or_404` is the get-or-404-with-access idiom). The handlers installed by
`install_error_handlers` turn framework errors (validation, 404/405 routing, body limits, upstream failures,
crashes) into the same shape. Titles and
details are Chinese by default and English when `Accept-Language` prefers it.
"""
from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from common.context import request_id_var
from common.i18n import EN, negotiate_language

log = logging.getLogger("onenet.errors")

PROBLEM_MEDIA_TYPE = "application/problem+json"

# code -> (status, title zh, title en)
CATALOGUE: dict[str, tuple[int, str, str]] = {
    "malformed_json": (400, "请求体不是合法的 JSON", "Malformed JSON body"),
    "bad_request": (400, "请求有误", "Bad request"),
    "unauthenticated": (401, "需要登录或有效的访问令牌", "Authentication required"),
    "invalid_token": (401, "访问令牌无效或已过期", "Invalid or expired token"),
    "forbidden": (403, "无权访问该资源", "Forbidden"),
    "not_found": (404, "资源不存在", "Not found"),
    "method_not_allowed": (405, "不支持该请求方法", "Method not allowed"),
    "not_acceptable": (406, "无法提供所请求的格式", "Not acceptable"),
    "conflict": (409, "与当前状态冲突", "Conflict"),
    "precondition_failed": (412, "版本已变化，请刷新后重试", "Precondition failed"),
    "precondition_required": (428, "需要提供 If-Match 版本号", "Precondition required"),
    "payload_too_large": (413, "请求体过大", "Payload too large"),
    "unsupported_media_type": (415, "不支持的内容类型", "Unsupported media type"),
    "validation_failed": (422, "提交的数据未通过校验", "Validation failed"),
    "rate_limited": (429, "请求过于频繁，请稍后再试", "Too many requests"),
    "internal_error": (500, "服务器内部错误", "Internal server error"),
    "upstream_unavailable": (503, "上游服务暂不可用", "Upstream service unavailable"),
    "service_unavailable": (503, "服务暂不可用", "Service unavailable"),
    "upstream_timeout": (504, "上游服务响应超时", "Upstream service timed out"),
}

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
    504: "upstream_timeout",
}


class Problem(Exception):
    """An error the API reports as application/problem+json.

    `detail` may be a plain string or a (zh, en) pair; `errors` lists per-field problems as
    `{"field", "in", "code", "message"}` (message itself a str or (zh, en)).
    """

    def __init__(
        self,
        status: int,
        code: str | None = None,
        detail: str | tuple[str, str] | None = None,
        *,
        title: tuple[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.detail = detail
        self.title = title
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(f"{self.status} {self.code}: {detail!r}")


def field_error(field: str, code: str, zh: str, en: str, where: str = "body") -> dict[str, Any]:
    return {"field": field, "in": where, "code": code, "message": (zh, en)}


def invalid(field: str, code: str, zh: str, en: str, *, where: str = "body", status: int = 422) -> Problem:
    """A validation problem about one named field (for rules checked in the service layer)."""
    return Problem(status, "validation_failed", (zh, en), errors=[field_error(field, code, zh, en, where)])


class NotFound(Problem):
    """404: the object does not exist, or lies outside the caller's reach (which must answer the same)."""

    def __init__(self, code: str = "not_found", detail: str | tuple[str, str] | None = None, **kw: Any) -> None:
        super().__init__(404, code, detail or ("资源不存在或无权查看", "Not found"), **kw)


class Forbidden(Problem):
    """403: the caller is known and may see the object, but not do this to it."""

    def __init__(self, detail: str | tuple[str, str] | None = None, code: str = "forbidden", **kw: Any) -> None:
        super().__init__(403, code, detail, **kw)


class Conflict(Problem):
    """409: the change does not fit the object's current state."""

    def __init__(self, code: str = "conflict", detail: str | tuple[str, str] | None = None, **kw: Any) -> None:
        super().__init__(409, code, detail, **kw)


class VersionConflict(Problem):
    """A change that expected another version: 409 with the current version for a `version` field in the body,
    412 (`precondition_failed`) for an `If-Match` header."""

    def __init__(self, code: str = "version_conflict", detail: str | tuple[str, str] | None = None, *,
                 current_version: int | None = None, status: int = 409, **kw: Any) -> None:
        extra = kw.pop("extra", None) or ({"current_version": current_version} if current_version is not None
                                          else None)
        super().__init__(status, code, detail or ("已被他人修改，请刷新后重试", "Changed meanwhile; reload and retry"),
                         extra=extra, **kw)


def check_version(expected: int | None, current: int, code: str = "version_conflict",
                  detail: str | tuple[str, str] | None = None, *, with_current: bool = True) -> None:
    """A body's `version` against the object's: 409 when they differ (nothing to check when None)."""
    if expected is not None and expected != current:
        raise VersionConflict(code, detail, current_version=current if with_current else None)


def check_if_match(if_match: str | None, current: int, detail: str | tuple[str, str] | None = None) -> None:
    """An `If-Match` header (`"3"`, `W/"3"`) against the object's version: 412 when it differs."""
    if if_match is not None and if_match.strip('W/"') != str(current):
        raise VersionConflict("precondition_failed", detail, status=412)


def _pick(value: str | tuple[str, str] | None, lang: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return value[1] if lang == EN else value[0]
    return value


def problem_body(
    status: int,
    code: str,
    *,
    lang: str,
    detail: str | tuple[str, str] | None = None,
    title: tuple[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    if title is None:
        cat = CATALOGUE.get(code) or CATALOGUE.get(_STATUS_CODES.get(status, ""))
        title = (cat[1], cat[2]) if cat else ("错误", "Error")
    body: dict[str, Any] = {
        "type": f"urn:onenet:problem:{code}",
        "title": _pick(title, lang),
        "status": status,
        "detail": _pick(detail, lang) or _pick(title, lang),
        "code": code,
        "request_id": request_id_var.get(),
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = [
            {**e, "message": _pick(e.get("message"), lang)} for e in errors
        ]
    if extra:
        body.update(extra)
    return body


def problem_response(status: int, code: str, *, lang: str, headers: dict[str, str] | None = None,
                     **fields: Any) -> JSONResponse:
    """`problem_body`'s problem (`fields`: its detail, title, errors, instance, extra) as a response."""
    body = problem_body(status, code, lang=lang, **fields)
    hdrs = {"Content-Language": lang}
    if headers:
        hdrs.update(headers)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=hdrs)


def request_language(request: Request) -> str:
    return negotiate_language(request.headers.get("accept-language"))


# Pydantic error types -> Chinese / English messages for 422 responses.
_PYDANTIC_MESSAGES: dict[str, tuple[str, str]] = {
    "missing": ("此字段为必填项", "Field required"),
    "extra_forbidden": ("不允许的字段", "Unknown field"),
    "string_type": ("应为字符串", "Must be a string"),
    "string_too_short": ("内容过短", "Too short"),
    "string_too_long": ("内容过长", "Too long"),
    "string_pattern_mismatch": ("格式不正确", "Wrong format"),
    "int_type": ("应为整数", "Must be an integer"),
    "int_parsing": ("应为整数", "Must be an integer"),
    "int_from_float": ("应为整数", "Must be an integer"),
    "float_type": ("应为数字", "Must be a number"),
    "float_parsing": ("应为数字", "Must be a number"),
    "finite_number": ("应为有限的数值", "Must be a finite number"),
    "bool_type": ("应为布尔值", "Must be a boolean"),
    "bool_parsing": ("应为布尔值", "Must be a boolean"),
    "greater_than": ("数值过小", "Value too small"),
    "greater_than_equal": ("数值过小", "Value too small"),
    "less_than": ("数值过大", "Value too large"),
    "less_than_equal": ("数值过大", "Value too large"),
    "enum": ("不是允许的取值", "Not an allowed value"),
    "literal_error": ("不是允许的取值", "Not an allowed value"),
    "list_type": ("应为列表", "Must be a list"),
    "dict_type": ("应为对象", "Must be an object"),
    "model_type": ("应为对象", "Must be an object"),
    "model_attributes_type": ("应为对象", "Must be an object"),
    "datetime_type": ("应为日期时间", "Must be a datetime"),
    "datetime_parsing": ("日期时间格式不正确", "Invalid datetime"),
    "datetime_from_date_parsing": ("日期时间格式不正确", "Invalid datetime"),
    "timezone_aware": ("时间必须带时区偏移", "Timestamp must carry a UTC offset"),
    "date_type": ("应为日期", "Must be a date"),
    "date_parsing": ("日期格式不正确", "Invalid date"),
    "date_from_datetime_parsing": ("日期格式不正确", "Invalid date"),
    "uuid_parsing": ("标识格式不正确", "Invalid identifier"),
    "too_short": ("条目过少", "Too few items"),
    "too_long": ("条目过多", "Too many items"),
    "value_error": ("取值不正确", "Invalid value"),
    "url_parsing": ("网址格式不正确", "Invalid URL"),
    "json_invalid": ("JSON 格式不正确", "Malformed JSON"),
}


def translate_validation_errors(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for err in raw:
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) if len(loc) > 1 else where
        etype = err.get("type", "value_error")
        ctx = err.get("ctx") or {}
        if "message_en" in ctx:
            msg: tuple[str, str] = (err.get("msg", ""), str(ctx["message_en"]))
        elif etype in _PYDANTIC_MESSAGES:
            zh, en = _PYDANTIC_MESSAGES[etype]
            if etype == "value_error" and err.get("msg"):
                raw_msg = str(err["msg"]).removeprefix("Value error, ")
                zh, en = raw_msg, raw_msg
            msg = (zh, en)
        else:
            msg = (err.get("msg", "取值不正确"), err.get("msg", "Invalid value"))
        out.append({"field": field, "in": where, "code": etype, "message": msg})
    return out


class BodyTooLarge(Exception):
    """Raised while reading a request body that crosses the size limit."""


def install_error_handlers(app: FastAPI) -> None:
    from common.http_client import UpstreamTimeout, UpstreamUnavailable

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.code, lang=request_language(request), detail=exc.detail,
                                title=exc.title, errors=exc.errors, instance=request.url.path,
                                headers=exc.headers, extra=exc.extra)

    def _too_large_flagged(request: Request):
        if request.scope.get("state", {}).get("body_too_large"):
            return too_large_response(request_language(request), _body_limit(request), request.url.path)
        return None

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        if (flagged := _too_large_flagged(request)) is not None:
            return flagged
        raw = list(exc.errors())
        lang = request_language(request)
        if any(e.get("type") == "json_invalid" for e in raw):
            pos = next((e.get("ctx", {}).get("error") for e in raw if e.get("type") == "json_invalid"), None)
            return problem_response(400, "malformed_json", lang=lang, instance=request.url.path,
                                    detail=("请求体不是合法的 JSON" + (f"：{pos}" if pos else ""),
                                            "The request body is not valid JSON" + (f": {pos}" if pos else "")))
        errors = translate_validation_errors(raw)
        fields = "、".join(e["field"] for e in errors[:5])
        return problem_response(422, "validation_failed", lang=lang, instance=request.url.path, errors=errors,
                                detail=(f"以下字段有误：{fields}", f"Invalid fields: {', '.join(e['field'] for e in errors[:5])}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if (flagged := _too_large_flagged(request)) is not None:
            return flagged
        code = _STATUS_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail not in ("Not Found", "Method Not Allowed") else None
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only the first matching route's
            from common.openapi_contract import allowed_methods

            headers["Allow"] = allowed_methods(request.app, request.scope["path"]) or headers.get("Allow", "")
        return problem_response(exc.status_code, code, lang=request_language(request), detail=detail,
                                instance=request.url.path, headers=headers)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge):
        return too_large_response(request_language(request), _body_limit(request), request.url.path)

    @app.exception_handler(UpstreamUnavailable)
    async def _upstream_down(request: Request, exc: UpstreamUnavailable):
        return problem_response(503, "upstream_unavailable", lang=request_language(request),
                                detail=(f"依赖的服务 {exc.upstream} 暂不可用，请稍后重试",
                                        f"The {exc.upstream} service is unavailable; retry later"),
                                instance=request.url.path, headers={"Retry-After": "5"})

    @app.exception_handler(UpstreamTimeout)
    async def _upstream_slow(request: Request, exc: UpstreamTimeout):
        return problem_response(504, "upstream_timeout", lang=request_language(request),
                                detail=(f"依赖的服务 {exc.upstream} 响应超时", f"The {exc.upstream} service timed out"),
                                instance=request.url.path)

    @app.exception_handler(sqlalchemy.exc.TimeoutError)
    async def _pool_exhausted(request: Request, exc: sqlalchemy.exc.TimeoutError):
        # every connection of the pool busy past its timeout: the database is overloaded, not the request wrong
        # (the statement that wanted the connection never ran); the caller retries, as after any 503
        log.warning("database pool exhausted", extra={"request_id": request_id_var.get(), "path": request.url.path})
        return problem_response(503, "service_unavailable", lang=request_language(request),
                                detail=("数据库繁忙，请稍后重试", "The database is busy; retry shortly"),
                                instance=request.url.path, headers={"Retry-After": "2"})

    @app.exception_handler(sqlalchemy.exc.OperationalError)
    async def _database_error(request: Request, exc: sqlalchemy.exc.OperationalError):
        if "database is locked" in str(exc.orig):  # SQLite's busy timeout ran out: its transaction rolled back
            log.warning("database locked", extra={"request_id": request_id_var.get(), "path": request.url.path})
            return problem_response(503, "service_unavailable", lang=request_language(request),
                                    detail=("数据库繁忙，请稍后重试", "The database is busy; retry shortly"),
                                    instance=request.url.path, headers={"Retry-After": "2"})
        return await _crash(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        # Log everything for operators; tell the caller nothing about internals.
        log.exception("unhandled error", extra={"request_id": request_id_var.get(), "path": request.url.path})
        return internal_error_response(request_language(request), request.url.path)


def _body_limit(request: Request) -> int:
    """The body limit of this call: its route's own (uploads) or the service's."""
    return request.scope.get("state", {}).get("body_limit") or request.app.state.settings.max_body_bytes


def exception_handler_for(app, exc: Exception):
    """The handler the app registered for `exc`'s class (nearest in its MRO), or None: for `common.direct_routes`,
    which calls an endpoint function itself and must answer its errors as FastAPI would."""
    for cls in type(exc).__mro__:
        handler = app.exception_handlers.get(cls)
        if handler is not None:
            return handler
    return None


def internal_error_response(lang: str, path: str | None = None) -> JSONResponse:
    """The 500 problem for an unexpected error: logged for operators, nothing about internals for the caller."""
    return problem_response(500, "internal_error", lang=lang, instance=path,
                            detail=("服务器处理请求时出错，已记录，请稍后重试或联系运维并提供请求编号",
                                    "The server failed to handle the request; it has been logged. "
                                    "Retry later or give ops the request id."))


def too_large_response(lang: str, limit: int, path: str | None = None) -> JSONResponse:
    return problem_response(413, "payload_too_large", lang=lang, instance=path,
                            detail=(f"请求体超过 {limit // 1024} KiB 的上限", f"The body exceeds the {limit // 1024} KiB limit"))
