"""Server-rendered SVG charts (no JavaScript, no CDN): a bullet chart per indicator and a trend line."""
from __future__ import annotations

from html import escape
from typing import Any

COLOURS = {"met": "#2e7d32", "warning": "#f9a825", "missed": "#c62828", None: "#78909c"}


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)


def bullet(item: dict[str, Any], width: int = 320, height: int = 22) -> str:
    """Value bar against the target (dark tick) and baseline (grey tick), coloured by status."""
    value = item.get("value")
    target = (item.get("target") or {}).get("value")
    baseline = (item.get("baseline") or {}).get("value")
    top = max([x for x in (value, target, baseline) if x is not None] or [1.0]) * 1.15 or 1.0
    x = lambda v: round(v / top * (width - 4), 1)  # noqa: E731
    parts = [f'<svg class="bullet" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(item["name_zh"])} {fmt(value)} / 目标 {fmt(target)}">',
             f'<rect x="0" y="4" width="{width - 4}" height="{height - 8}" fill="#eceff1"/>']
    if value is not None:
        parts.append(f'<rect class="value" data-value="{fmt(value)}" x="0" y="6" width="{x(value)}" '
                     f'height="{height - 12}" fill="{COLOURS[item.get("status")]}"/>')
    if baseline is not None:
        parts.append(f'<line x1="{x(baseline)}" x2="{x(baseline)}" y1="2" y2="{height - 2}" stroke="#90a4ae" '
                     f'stroke-width="2"><title>基线 {fmt(baseline)}</title></line>')
    if target is not None:
        parts.append(f'<line x1="{x(target)}" x2="{x(target)}" y1="0" y2="{height}" stroke="#263238" '
                     f'stroke-width="3"><title>目标 {fmt(target)}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def trend(points: list[tuple[str, float | None]], target: float | None, *, width: int = 560,
          height: int = 180, unit: str = "") -> str:
    """A line over periods with the target as a dashed line; missing periods leave gaps."""
    pad_l, pad_b, pad_t = 48, 28, 12
    vals = [v for _, v in points if v is not None] + ([target] if target is not None else [])
    top = (max(vals) * 1.15) if vals and max(vals) > 0 else 1.0
    n = max(len(points) - 1, 1)
    px = lambda i: pad_l + i * (width - pad_l - 12) / n  # noqa: E731
    py = lambda v: pad_t + (1 - v / top) * (height - pad_t - pad_b)  # noqa: E731
    out = [f'<svg class="trend" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - 12}" y2="{height - pad_b}" stroke="#90a4ae"/>',
           f'<text x="4" y="{pad_t + 8}" font-size="11">{fmt(top)}{escape(unit)}</text>',
           f'<text x="4" y="{height - pad_b}" font-size="11">0</text>']
    if target is not None:
        out.append(f'<line x1="{pad_l}" x2="{width - 12}" y1="{py(target):.1f}" y2="{py(target):.1f}" '
                   f'stroke="#263238" stroke-dasharray="6 4"><title>目标 {fmt(target)}</title></line>')
    seg: list[str] = []
    for i, (label, v) in enumerate(points):
        out.append(f'<text x="{px(i):.1f}" y="{height - 8}" font-size="11" text-anchor="middle">{escape(label)}</text>')
        if v is None:
            if len(seg) > 1:
                out.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{" ".join(seg)}"/>')
            seg = []
            continue
        seg.append(f"{px(i):.1f},{py(v):.1f}")
        out.append(f'<circle cx="{px(i):.1f}" cy="{py(v):.1f}" r="3.5" fill="#1565c0" data-value="{fmt(v)}">'
                   f'<title>{escape(label)}: {fmt(v)}{escape(unit)}</title></circle>')
    if len(seg) > 1:
        out.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="2" points="{" ".join(seg)}"/>')
    out.append("</svg>")
    return "".join(out)
