"""How the SQLite writer brings an entity's stored observations from old to new: only the rows that went are
deleted (by key) and only the new ones inserted, unless the key does not tell the entity's rows apart."""
from __future__ import annotations

from datetime import timedelta

from svc_metrics.events import service
from svc_metrics.events.registry import Envelope
from svc_metrics.kpis.observations import Obs, derive
from tests.svc_metrics.conftest import T0, request_flow

H = timedelta(hours=1)


def _evs(events: list[dict]):
    return [service.as_ev(Envelope.model_validate(e)) for e in events]


def test_a_resolved_request_deletes_only_what_went():
    flow = _evs(request_flow("d1", T0, steps={"accepted": H, "resolved": 5 * H}, due=3 * H))
    old, new = derive("request", flow[:2]), derive("request", flow)
    remove: list[tuple] = []
    replace, rows = service._plan_observations({("request", "d1"): (old, new)}, {}, sqlite=True, remove=remove)
    assert replace == []
    gone = {r[2] for r in remove}
    assert "resolution" in gone                          # unresolved → resolved
    assert all(r[:2] == ("request", "d1") for r in remove)
    kept = {(o.kpi, o.mode) for o in old} & {(o.kpi, o.mode) for o in new} - {(k, "flow") for k in gone}
    inserted = {(r[0], r[1]) for r in rows}
    assert ("response_time", "flow") in kept and ("response_time", "flow") not in inserted   # unchanged: not rewritten
    assert {("resolution", "flow"), ("closure_time", "flow")} <= inserted
    # without `remove` (PostgreSQL's path), the entity is rewritten whole
    replace, rows = service._plan_observations({("request", "d1"): (old, new)}, {}, sqlite=True)
    assert replace == [("request", "d1")] and len(rows) == len(new)


def test_rows_the_key_cannot_tell_apart_are_rewritten_whole():
    a = Obs("match_accuracy", T0, place="110105001001", num=1.0, den=1.0)
    b = Obs("match_accuracy", T0, place="110105001001", num=0.0, den=1.0)   # same key, other numbers
    remove: list[tuple] = []
    replace, rows = service._plan_observations({("need", "n1"): ([a, b], [a])}, {}, sqlite=True, remove=remove)
    assert remove == [] and replace == [("need", "n1")] and len(rows) == 1
