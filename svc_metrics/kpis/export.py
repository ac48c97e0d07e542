"""CSV and XLSX renderings of a KPI table (the same columns as the JSON items)."""
from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = [("code", "指标代码"), ("name_zh", "指标"), ("name_en", "Indicator"), ("unit", "单位"),
           ("value", "数值"), ("mean", "平均"), ("median", "中位数"), ("p90", "90分位"),
           ("numerator", "分子"), ("denominator", "分母"), ("count", "样本数"), ("target", "目标"),
           ("target_source", "目标来源"), ("baseline", "基线"), ("status_zh", "状态")]


def rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for it in items:
        flat = {**it, "target": (it.get("target") or {}).get("value"),
                "target_source": (it.get("target") or {}).get("source"),
                "baseline": (it.get("baseline") or {}).get("value")}
        out.append([flat.get(k) for k, _ in COLUMNS])
    return out


def header() -> list[str]:
    return [f"{zh} {k}" if zh != k else k for k, zh in COLUMNS]


def to_csv(items: list[dict[str, Any]], meta: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(meta)
    w.writerow(header())
    w.writerows(rows(items))
    return ("\ufeff" + buf.getvalue()).encode("utf-8")  # BOM so Excel opens the Chinese text correctly


def to_xlsx(items: list[dict[str, Any]], meta: list[str]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "KPI"
    ws.append(meta)
    ws.append(header())
    for r in rows(items):
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
