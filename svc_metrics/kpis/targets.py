"""Which target applies to an indicator (a per-scope override, then the catalogue's) and the verdict on a value."""
from __future__ import annotations

from typing import Any

from svc_metrics.kpis.models import KpiDefinition, TargetOverride
from svc_metrics.kpis.queries import ALL, Filters

STATUS = {"met": ("达标", "Met"), "warning": ("预警", "Warning"), "missed": ("未达标", "Missed")}


def catalogue_target(defn: KpiDefinition, group: str | None, channel: str | None = None) -> dict[str, Any] | None:
    """A channel's own target (the kiosk wait of errand_time) when that channel is asked for, then a special
    group's, then the first general one."""
    targets = defn.targets or []
    if channel:
        for t in targets:
            if t.get("channel") == channel:
                return t
    if group:
        for t in targets:
            if t.get("group") in (group, "*") and not t.get("channel"):
                return t
    return next((t for t in targets if not t.get("group") and not t.get("channel")), None)


def pick_target(defn: KpiDefinition, overrides: list[TargetOverride], f: Filters) -> dict[str, Any] | None:
    """The most specific override whose scope contains the query's scope, else the catalogue's target."""
    def rank(o: TargetOverride) -> int:
        return 0 if o.scope == ALL else len(o.scope)
    fits = [o for o in overrides if o.code == defn.code
            and (o.scope == ALL or (f.scope != ALL and f.scope.startswith(o.scope)))]
    if fits:
        best = max(fits, key=rank)
        return {"value": best.value, "source": best.source, "note": best.note, "override_scope": best.scope}
    return catalogue_target(defn, f.group, f.channel)


def judge(defn: KpiDefinition, value: float | None, target: float | None) -> str | None:
    if value is None or target is None:
        return None
    band = defn.warn_ratio if defn.warn_ratio is not None else 0.1
    if defn.direction == "higher":
        if value >= target:
            return "met"
        return "warning" if value >= target * (1 - band) else "missed"
    if value <= target:
        return "met"
    return "warning" if value <= target * (1 + band) else "missed"


def describe(defn: KpiDefinition) -> dict[str, Any]:
    return {"code": defn.code, "name_zh": defn.name_zh, "name_en": defn.name_en, "unit": defn.unit,
            "direction": defn.direction, "definition_zh": defn.definition_zh, "definition_en": defn.definition_en,
            "stat": defn.stat if defn.calc in ("duration", "mean") else None, "baseline": defn.baseline,
            "targets": defn.targets, "sources": defn.sources}


def judged(defn: KpiDefinition, figures: dict[str, Any], f: Filters,
           overrides: list[TargetOverride]) -> dict[str, Any]:
    target = pick_target(defn, overrides, f)
    status = judge(defn, figures["value"], target["value"] if target else None)
    return {"code": defn.code, "name_zh": defn.name_zh, "name_en": defn.name_en, "unit": defn.unit,
            "direction": defn.direction, **figures, "target": target, "baseline": defn.baseline,
            "status": status, "status_zh": STATUS[status][0] if status else None,
            "status_en": STATUS[status][1] if status else None}
