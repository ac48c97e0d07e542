"""Field types shared by the API schemas (coordinates, place codes, weekly windows)."""
from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common import validators

Latitude = Annotated[float, Field(ge=-90, le=90, description="纬度 WGS-84", examples=[39.921])]
Longitude = Annotated[float, Field(ge=-180, le=180, description="经度 WGS-84", examples=[116.443])]
PlaceCode = Annotated[validators.PlaceCode, Field(description="区划/网格编码", examples=["110105001001001"])]
HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$", examples=["09:00"])]
ByDay = Annotated[str, Field(pattern=r"^(MO|TU|WE|TH|FR|SA|SU)(,(MO|TU|WE|TH|FR|SA|SU))*$", examples=["MO,WE,FR"])]
TermCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", examples=["elderly_care"])]

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def slots(windows: list[dict]):
    """Weekly windows ({byday, opens_at, closes_at}) → engine slots."""
    from svc_matching.engine import Slot

    out = []
    for w in windows:
        for d in w["byday"].split(","):
            out.append(Slot(DAYS.index(d), minutes(w["opens_at"]), minutes(w["closes_at"])))
    return tuple(sorted(out, key=lambda s: (s.weekday, s.start_min, s.end_min)))
