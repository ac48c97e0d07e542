"""The benchmark's events: a year of one district's producers' outbox events (svc_services' requests,
svc_matching's needs, offers and ledger, svc_residents' people, the gateway's exchange items and calls), in the
order a relay delivers them, ids made as `common.ids.new_id` makes them."""
from __future__ import annotations

import heapq
import json
import random
import uuid
from datetime import date, datetime, timedelta, timezone

try:
    import orjson

    def dumps(obj) -> bytes:
        return orjson.dumps(obj)
except ImportError:  # pragma: no cover
    def dumps(obj) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

SHANGHAI = timezone(timedelta(hours=8))
FIRST_DAY, LAST_DAY = date(2025, 11, 1), date(2026, 10, 31)
DISTRICT = "110105"
STREETS = [f"{DISTRICT}{s:03d}" for s in range(1, 5)]
COMMUNITIES = [f"{s}{c:03d}" for s in STREETS for c in range(1, 6)]
GRIDS = [f"{c}{g:03d}" for c in COMMUNITIES for g in range(1, 6)]

# (category, weight, hours allowed to resolve, departments it goes to)
CATEGORIES = [("life_service", 22, 72, ["jiedao"]), ("grid_event", 20, 48, ["chengguan"]),
              ("city_management", 12, 72, ["chengguan", "zhujian"]), ("government", 8, 72, ["zhengwu"]),
              ("social_security", 6, 120, ["renshe"]), ("certificates", 5, 72, ["gongan", "zhengwu"]),
              ("dispute", 6, 168, ["sifa"]), ("health", 6, 72, ["weijian"]), ("elderly_care", 9, 72, ["minzheng"]),
              ("environment", 4, 96, ["shengtai", "chengguan"]), ("emergency", 2, 4, ["yingji"])]
CHANNELS = {"grid_event": [("grid_patrol", 80), ("app", 20)], "emergency": [("iot", 60), ("phone", 40)],
            "*": [("app", 38), ("kiosk", 10), ("api", 5), ("phone", 22), ("counter", 15), ("wechat", 10)]}
GROUPS = [("elderly", 0.12), ("disabled", 0.03), ("living_alone", 0.04), ("dibao", 0.03), ("veteran", 0.01)]
NEED_CATEGORIES = ["elderly_care", "meal", "bath", "cleaning", "companionship", "childcare", "repair", "medical_escort"]
DEPARTMENTS = ["minzheng", "weijian", "renshe", "zhujian", "chengguan", "gongan", "sifa", "zhengwu", "yingji",
               "shengtai", "jiaotong", "jiaoyu"]

H = 3600.0


RANDOM_IDS = False   # --random-ids: UUIDv4 everywhere, the worst case for the event store's indexes


def uid(rnd: random.Random, at: datetime) -> str:
    """An id as the producers make them (`common.ids.new_id`): a UUIDv7 (RFC 9562), whose first 48 bits are
    the creation time in milliseconds, so later ids sort later, which is what the event store's indexes see."""
    if RANDOM_IDS:
        return str(uuid.UUID(int=rnd.getrandbits(128), version=4))
    ms = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = rnd.getrandbits(74)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))))


def iso(t: datetime | None) -> str | None:
    return t.isoformat() if t else None



class Generator:
    """A time-ordered stream of events: each day's new entities push all their future events onto a heap keyed
    by delivery time; a day's worth is released before the next day is generated."""

    def __init__(self, n_events: int, seed: int = 1):
        self.rnd = random.Random(seed)
        self.n = n_events
        scale = n_events / 1_000_000 * 1.02   # a little over, so the stream is cut at exactly n_events
        days = (LAST_DAY - FIRST_DAY).days + 1
        self.days = days
        self.requests_per_day = 152_000 * scale / days
        self.needs_per_day = 27_000 * scale / days
        self.people = max(200, int(60_000 * scale))
        self.heap: list = []
        self.seq = 0
        self.persons: list[tuple[str, str, int]] = []   # (person_id, grid, age)
        self.volunteers: list[str] = []
        self.resources: list[tuple[str, str]] = []

    # -------------------------------------------------------------------------------------- plumbing
    def push(self, type_: str, at: datetime, subject: str | None, grid: str | None, data: dict, *,
             source: str, community: str | None = None) -> None:
        self.seq += 1
        deliver = at
        if self.rnd.random() < 0.02:   # late delivery: a relay that was down for a while
            deliver = at + timedelta(seconds=self.rnd.uniform(60, 86_400))
        env = {"event_id": uid(self.rnd, at), "type": type_, "occurred_at": at.isoformat(), "source": source,
               "community": community or (grid[:12] if grid else None), "grid": grid, "subject": subject,
               "data": data}
        heapq.heappush(self.heap, (deliver, self.seq, env))

    def when(self, day: date) -> datetime:
        """A moment on `day`, mostly in office hours (Shanghai)."""
        r = self.rnd
        hour = r.choices(range(24), weights=[1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 15, 12, 9, 12, 15, 15, 13, 10, 7, 5,
                                             4, 3, 2, 1])[0]
        return datetime(day.year, day.month, day.day, hour, r.randrange(60), r.randrange(60),
                        tzinfo=SHANGHAI).astimezone(timezone.utc)

    def pick_groups(self) -> list[str]:
        return [g for g, p in GROUPS if self.rnd.random() < p]

    # -------------------------------------------------------------------------------------- producers
    def setup(self) -> None:
        """Before the first day: members, the service catalogue, data items, residents, volunteers, resources."""
        r, t0 = self.rnd, datetime(2025, 10, 31, 2, tzinfo=timezone.utc)
        for i, d in enumerate(DEPARTMENTS):
            self.push("member.joined", t0 + timedelta(minutes=i), d, None, {"kind": "department", "code": d},
                      source="gateway")
        for i in range(4):
            self.push("member.joined", t0, f"app-{i}", None, {"kind": "app"}, source="gateway")
        for i in range(320):
            cat = r.choice(CATEGORIES)[0]
            channels = r.sample(["app", "kiosk", "api", "counter", "phone"], r.randint(1, 4))
            self.push("catalogue.item_created", t0 + timedelta(seconds=i), f"item-{i:04d}", None,
                      {"code": f"item-{i:04d}", "version": 1, "category": cat, "tier": "district",
                       "department": r.choice(DEPARTMENTS), "channels": channels, "emergency": cat == "emergency",
                       "online": any(c in ("app", "kiosk", "api") for c in channels)}, source="svc_services")
        for i in range(240):
            owner = r.choice(DEPARTMENTS)
            sharing = r.choice(["unconditional", "conditional", "conditional", "not_shared"])
            self.push("exchange.item", t0 + timedelta(seconds=i), f"{owner}.item{i}", None,
                      {"item": f"{owner}.item{i}", "required": sharing != "not_shared",
                       "shared": sharing != "not_shared" and r.random() < 0.5, "owner": owner,
                       "sharing_class": sharing}, source="gateway")
        for i in range(self.people):
            grid = r.choice(GRIDS)
            age = min(100, max(0, int(r.gauss(44, 21))))
            registered = t0 - timedelta(days=r.randint(1, 3000)) + timedelta(seconds=i)
            pid = uid(r, registered)
            self.persons.append((pid, grid, age))
            band = f"{min(age // 10 * 10, 90)}+"
            self.push("person.registered", registered,
                      pid, grid, {"age_band": band, "age": age, "gender": r.choice("FM"),
                                  "household_id": uid(r, registered), "verified": r.random() < 0.8},
                      source="svc_residents")
            if r.random() < 0.1:
                vid = uid(r, t0 + timedelta(seconds=i))
                self.volunteers.append(vid)
                self.push("volunteer.registered", t0 + timedelta(seconds=i), vid, grid,
                          {"person_id": pid, "skills": r.sample(NEED_CATEGORIES, 2), "max_load": 3},
                          source="svc_matching")
        for i in range(max(20, int(2_400 * self.n / 1_000_000))):
            rid = uid(r, t0 + timedelta(seconds=i))
            grid = r.choice(GRIDS)
            cat = r.choice(NEED_CATEGORIES)
            self.resources.append((rid, grid))
            self.push("resource.listed", t0 + timedelta(seconds=i), rid, grid,
                      {"category": cat, "owner": r.choice(DEPARTMENTS), "kind": "facility"}, source="svc_matching")

    def request(self, day: date) -> None:
        r = self.rnd
        cat, _, hours, depts = r.choices(CATEGORIES, weights=[c[1] for c in CATEGORIES])[0]
        chans = CHANNELS.get(cat, CHANNELS["*"])
        channel = r.choices([c for c, _ in chans], weights=[w for _, w in chans])[0]
        priority = "emergency" if cat == "emergency" else r.choices(["normal", "urgent"], weights=[9, 1])[0]
        person, grid, age = r.choice(self.persons)
        groups = self.pick_groups()
        if age >= 65 and "elderly" not in groups:
            groups.append("elderly")
        t = self.when(day)
        rid = uid(r, t)
        due = t + timedelta(hours=hours)
        resp_due = t + (timedelta(seconds=60) if priority == "emergency" else timedelta(hours=12))
        department = depts[0]
        departments = sorted(set(depts[:2] if r.random() < 0.35 else depts[:1]))
        state = {"submitted_at": t}
        version = [0]

        def data(action: str, to_state: str, at: datetime, **extra) -> dict:
            version[0] += 1
            d = {"request_id": rid, "action": action, "to_state": to_state, "version": version[0],
                 "channel": channel, "online": channel in ("app", "kiosk", "api"), "item_code": f"item-{r.randrange(320):04d}",
                 "category": cat, "department": department, "departments": departments, "priority": priority,
                 "proxy": r.random() < 0.05, "assignee_kind": "department", "overdue": at > due,
                 "submitted_at": iso(t), "first_response_at": iso(state.get("first")),
                 "resolved_at": iso(state.get("resolved")), "response_due_at": iso(resp_due),
                 "resolution_due_at": iso(due), "occurred_at": iso(at)}
            if action == "submit":
                d.update(groups=groups, requester_id=person, requester_age=age)
            d.update(extra)
            return d

        def emit(type_: str, at: datetime, action: str, to_state: str, **extra) -> None:
            self.push(type_, at, rid, grid, data(action, to_state, at, **extra), source="svc_services")

        emit("request.submitted", t, "submit", "submitted")
        fate = r.random()
        if fate < 0.03:
            emit("request.cancelled", t + timedelta(hours=r.uniform(0.2, 20)), "cancel", "cancelled")
            return
        if fate < 0.05:
            emit("request.rejected", t + timedelta(hours=r.uniform(0.5, 24)), "reject", "rejected")
            return
        scale = 1 / 60 if priority == "emergency" else 1.0
        first = t + timedelta(seconds=r.expovariate(1 / (5 * H * scale)) + 20)
        state["first"] = first
        emit("request.accepted" if r.random() < 0.6 else "request.dispatched", first, "accept", "accepted")
        if fate > 0.93:   # still open: overdue when its due time passes
            emit("request.overdue", due + timedelta(minutes=5), "overdue", "accepted", breaches=["resolution"])
            return
        started = first + timedelta(seconds=r.expovariate(1 / (6 * H * scale)) + 30)
        if r.random() < 0.5 or priority == "emergency":
            emit("request.started", started, "start", "in_progress")
        resolved = started + timedelta(seconds=r.expovariate(1 / (hours * 0.45 * H)) + 600)
        if resolved > due:
            emit("request.overdue", due + timedelta(minutes=5), "overdue", "in_progress", breaches=["resolution"])
        state["resolved"] = resolved
        emit("request.resolved", resolved, "resolve", "resolved")
        end = resolved
        if r.random() < 0.04:   # the resident disagrees: reopened, resolved again
            reopened = resolved + timedelta(hours=r.uniform(2, 48))
            emit("request.reopened", reopened, "reopen", "accepted")
            end = reopened + timedelta(hours=r.uniform(4, 72))
            state["resolved"] = end
            emit("request.resolved", end, "resolve", "resolved")
        if r.random() < 0.62:
            rating = r.choices([5, 4, 3, 2, 1], weights=[46, 30, 12, 7, 5])[0]
            emit("request.rated", end + timedelta(hours=r.uniform(0.5, 72)), "rate", "resolved", rating=rating)
        if r.random() < 0.85:
            emit("request.closed", end + timedelta(hours=r.uniform(24, 96)), "close", "closed")

    def need(self, day: date) -> None:
        r = self.rnd
        person, grid, age = r.choice(self.persons)
        t = self.when(day)
        nid, cat = uid(r, t), r.choice(NEED_CATEGORIES)
        base = {"category": cat, "priority": r.choice(["normal", "normal", "high"]), "person_id": person,
                "requester_age": age, "groups": self.pick_groups()}
        self.push("need.created", t, nid, grid, {**base, "priority_score": r.randint(1, 100)}, source="svc_matching")
        at = t + timedelta(minutes=r.uniform(5, 120))
        self.push("match.proposed", at, nid, grid, {"need_id": nid, "proposal_id": uid(r, at), "mode": "batch",
                                                     "category": cat}, source="svc_matching")
        for attempt in range(3):
            at += timedelta(hours=r.expovariate(1 / 3.0))
            outcome = r.choices(["offer.accepted", "offer.declined", "offer.expired"], weights=[72, 20, 8])[0]
            oid = uid(r, at)
            offer = {"need_id": nid, "provider_kind": "volunteer", "category": cat,
                     "provider_id": r.choice(self.volunteers) if self.volunteers else uid(r, at)}
            self.push(outcome, at, oid, grid, offer, source="svc_matching")
            if outcome == "offer.accepted":
                if r.random() < 0.85:
                    done = at + timedelta(hours=r.uniform(2, 72))
                    self.push("offer.completed", done, oid, grid, offer, source="svc_matching")
                    if offer["provider_id"] and r.random() < 0.7:
                        minutes = r.choice([30, 60, 90, 120])
                        posted = done + timedelta(minutes=5)
                        self.push("ledger.posted", posted, uid(r, posted), grid,
                                  {"kind": "credit", "unit": "minute", "reference": oid,
                                   "entries": [{"account_id": "issuance", "amount": -minutes},
                                               {"account_id": offer["provider_id"], "amount": minutes}]},
                                  source="svc_matching")
                return

    def community_life(self, day: date) -> None:
        r, scale = self.rnd, self.n / 1_000_000 * 1.02
        for _ in range(self._count(36 * scale)):   # volunteers offer hours
            _pid, grid, _ = r.choice(self.persons)
            at = self.when(day)
            self.push("volunteer.hours_offered", at, uid(r, at), grid,
                      {"minutes": r.choice([60, 120, 180, 240]), "volunteer_id": r.choice(self.volunteers or ["v"])},
                      source="svc_matching")
        for _ in range(self._count(70 * scale)):   # residents take part in community affairs
            pid, grid, _ = r.choice(self.persons)
            at = self.when(day)
            self.push("participation.recorded", at, uid(r, at), grid,
                      {"person_id": pid, "activity": r.choice(["议事会", "志愿服务", "文体活动", "听证会"])},
                      source="svc_matching")
        for _ in range(self._count(30 * scale)):   # calls across the exchange, counted per log batch as sent
            calls, refused = r.randint(1, 20), r.random() < 0.05
            self.push("exchange.calls", self.when(day), f"{r.choice(DEPARTMENTS)}.item{r.randrange(240)}", None,
                      {"member": r.choice(DEPARTMENTS), "resource": f"item{r.randrange(240)}",
                       "status": 429 if refused else 200, "outcome": "refused" if refused else "ok",
                       "refused": refused, "count": calls, "statuses": {"429" if refused else "200": calls}},
                      source="gateway")
        if self.resources and r.random() < 0.03:
            rid, grid = r.choice(self.resources)
            self.push("resource.withdrawn", self.when(day), rid, grid, {}, source="svc_matching")
        if r.random() < 0.05:
            i = r.randrange(320)
            self.push("catalogue.item_versioned", self.when(day), f"item-{i:04d}", None,
                      {"code": f"item-{i:04d}", "version": 2, "online": True, "channels": ["app", "counter"]},
                      source="svc_services")
        for _ in range(self._count(12 * scale)):
            pid, grid, age = r.choice(self.persons)
            at = self.when(day)
            self.push("person.registered", at, uid(r, at), grid,
                      {"age_band": f"{min(age // 10 * 10, 90)}+", "age": age}, source="svc_residents")

    def _count(self, mean: float) -> int:
        whole = int(mean)
        return whole + (1 if self.rnd.random() < mean - whole else 0)

    def __iter__(self):
        self.setup()
        emitted = 0
        for i in range(self.days):
            day = FIRST_DAY + timedelta(days=i)
            weekday = day.isoweekday() <= 5
            factor = 1.15 if weekday else 0.62
            for _ in range(self._count(self.requests_per_day * factor)):
                self.request(day)
            for _ in range(self._count(self.needs_per_day * factor)):
                self.need(day)
            self.community_life(day)
            horizon = datetime(day.year, day.month, day.day, tzinfo=SHANGHAI) + timedelta(days=1)
            while self.heap and self.heap[0][0] < horizon:
                yield heapq.heappop(self.heap)[2]
                emitted += 1
                if emitted >= self.n:
                    return
        while self.heap and emitted < self.n:
            yield heapq.heappop(self.heap)[2]
            emitted += 1

