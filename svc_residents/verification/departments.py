"""What each department is asked and how its answer becomes the platform's findings.

A finding is only ever drawn from a field the department actually answered with a boolean: a field the exchange
removed or masked (outside the grant's field scope), a null or a value of another type means "unknown", and an
unknown never adds or removes a tag.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# department code -> (name, what it vouches for)
DEPARTMENTS: dict[str, tuple[str, str]] = {
    "gongan": ("公安局", "身份与户籍登记 identity and household registration"),
    "minzheng": ("民政局", "低保、特困、低收入 minimum-income, extreme hardship, low income"),
    "canlian": ("残联", "残疾人证 disability certificate"),
    "weijian": ("卫健委", "健康体检摘要 health-check summary"),
    "renshe": ("人社局", "社会保险 social insurance"),
}
# department -> {tag code: answer field}: the special-group tags a department vouches for.
TAG_FIELDS: dict[str, dict[str, str]] = {
    "minzheng": {"dibao": "dibao", "tekun": "tekun", "low_income": "low_income"},
    "canlian": {"disabled": "certificate"},
}
RESIDENCY_BY_ANSWER = {"户籍": "registered", "常住": "resident", "流动人口": "floating", "流动": "floating"}


class UnusableAnswer(Exception):
    """The department answered, but not about this person or not in a shape we can use."""


@dataclass
class Findings:
    tags: dict[str, bool] = field(default_factory=dict)  # tag code -> holds (only the known ones)
    residency_type: str | None = None  # gongan: the registered residency type, when known
    summary: dict[str, Any] = field(default_factory=dict)  # stored on the verification record


def _bool(data: dict, key: str) -> bool | None:
    v = data.get(key)
    return v if isinstance(v, bool) else None


def interpret(code: str, id_number: str, body: Any) -> Findings:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise UnusableAnswer("部门应答格式无法识别 / unrecognised answer")
    if body.get("department") not in (None, code):
        raise UnusableAnswer("应答来自其他部门 / answer from another department")
    answered_for = body.get("id_number")
    if isinstance(answered_for, str) and "*" not in answered_for and answered_for != id_number:
        raise UnusableAnswer("应答不是针对该居民 / answer about another person")
    data = body["data"]
    f = Findings()
    for tag, key in TAG_FIELDS.get(code, {}).items():
        v = _bool(data, key)
        if v is not None:
            f.tags[tag] = v
    if code == "gongan":
        registered = _bool(data, "registered")
        f.summary["registered"] = registered
        if registered:
            f.residency_type = RESIDENCY_BY_ANSWER.get(data.get("residency_type"))
        f.summary["residency_type"] = f.residency_type
    elif code == "canlian":
        f.summary["certificate"] = _bool(data, "certificate")
        if f.tags.get("disabled"):
            f.summary["category"] = data.get("category") if isinstance(data.get("category"), str) else None
            f.summary["grade"] = data.get("grade") if isinstance(data.get("grade"), int) else None
    elif code == "weijian":
        year = data.get("last_check_year")
        f.summary["last_check_year"] = year if isinstance(year, int) else None
        f.summary["chronic_conditions"] = _bool(data, "chronic_conditions")
    elif code == "renshe":
        f.summary["insured"] = _bool(data, "insured")
        f.summary["pension"] = _bool(data, "pension")
    f.summary["tags"] = dict(f.tags)
    return f
