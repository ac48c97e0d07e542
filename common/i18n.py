"""zh-CN by default, English when the caller's Accept-Language prefers it."""
from __future__ import annotations

ZH = "zh-CN"
EN = "en"


def negotiate_language(accept_language: str | None) -> str:
    if not accept_language:
        return ZH
    best_lang, best_q = ZH, -1.0
    for part in accept_language.split(","):
        piece = part.strip()
        if not piece:
            continue
        lang, _, params = piece.partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if q <= 0:
            continue  # q=0 means "not this one"
        lang = lang.strip().lower()
        if lang.startswith("zh"):
            cand = ZH
        elif lang.startswith("en"):
            cand = EN
        else:
            continue
        if q > best_q:
            best_lang, best_q = cand, q
    return best_lang
