"""Activities: who organises them, who may sign up, the waitlist, and check-in crediting the ledger.

Activities are announced to every signed-in caller (a notice board); sign-ups are personal records: the person
(or their proxy), staff covering the activity's place, the organising organisation, ops. A participant's place is
taken by one conditional UPDATE under a CHECK (as a booking slot's), so concurrent sign-ups never overfill it.
A check-in credits through the time-bank ledger with the posting id `activity:<activity>:<person>`: one credit
per check-in however often it is sent (the ledger is idempotent by posting id; the sign-up row is locked)."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Conflict, Forbidden, NotFound, check_version, invalid
from common.ids import new_id
from common.lookup import get_or_404
from common.outbox import record_event
from svc_matching.access import PLACE_STAFF, is_own, sees_place
from svc_matching.activities.models import Activity, ActivitySignup
from svc_matching.activities.schemas import ActivityCreate, SignupCreate, StatusBody
from svc_matching.base import OutboxEvent
from svc_matching.bookings.models import BookableResource
from svc_matching.bookings.notices import signup_notice
from svc_matching.directory.models import Organization
from svc_matching.people.models import Volunteer
from svc_matching.people.places import known_person
from svc_matching.timebank.service import credit_member

NOT_FOUND = ("活动不存在", "Activity not found")
CHECK_IN_EARLY = timedelta(hours=1)
HOLDING = ("signed_up", "checked_in")


def staff_of(principal: Principal, place_code: str) -> bool:
    return principal.role == "ops" or (principal.role in PLACE_STAFF and sees_place(principal, place_code))


def organiser_of(principal: Principal, a: Activity) -> bool:
    return (a.organiser_kind == "organisation" and principal.role == "provider"
            and a.organiser_id in principal.scope_values("provider"))


def manages(principal: Principal, a: Activity) -> bool:
    return staff_of(principal, a.place_code) or organiser_of(principal, a)


def _event(session: AsyncSession, a: Activity, name: str, now: datetime, subject: str | None = None, **data) -> None:
    record_event(session, OutboxEvent, f"activity.{name}", subject=subject or a.id,
                 data={"activity_id": a.id, "category": a.category, "organiser_kind": a.organiser_kind,
                       "starts_at": a.starts_at.isoformat(), **data},
                 community=a.place_code[:12], grid=a.place_code if len(a.place_code) == 15 else None, now=now)


async def _write_first(session: AsyncSession, activity_id: str) -> None:
    if session.bind.dialect.name == "sqlite":  # the single writer's lock before anything is read
        await session.execute(update(Activity).where(Activity.id == activity_id).values(version=Activity.version))


async def create_activity(session: AsyncSession, principal: Principal, body: ActivityCreate, *, now: datetime,
                          activity_id: str | None = None) -> Activity:
    may = (staff_of(principal, body.place_code) and principal.role != "grid_worker") or (
        body.organiser_kind == "organisation" and principal.role == "provider"
        and body.organiser_id in principal.scope_values("provider"))
    if not may:
        raise Forbidden(("只能由本辖区工作人员或主办组织发布活动", "Only staff of the place or the organising "
                         "organisation publish activities"), code="activity.not_organiser")
    if body.starts_at < now:
        raise invalid("starts_at", "activity.in_past", "活动开始时间已过", "The activity would start in the past")
    if body.organiser_kind == "organisation" and await session.get(Organization, body.organiser_id) is None:
        raise invalid("organiser_id", "activity.organiser_unknown", "主办组织不存在（须为已登记的社会组织）",
                      "Unknown organising organisation (it must be registered in the directory)")
    if body.venue_resource_id is not None:
        venue = await session.get(BookableResource, body.venue_resource_id)
        if venue is None or not venue.place_code.startswith(body.place_code[:12]):
            raise invalid("venue_resource_id", "activity.venue_unknown", "场地不存在或不在举办社区",
                          "Unknown venue, or not in the activity's community")
    a = Activity(id=activity_id or new_id(), title=body.title, category=body.category, description=body.description,
                 organiser_kind=body.organiser_kind, organiser_id=body.organiser_id, place_code=body.place_code,
                 eligible_scope=body.eligible_scope or body.place_code[:12], venue_resource_id=body.venue_resource_id,
                 venue=body.venue, starts_at=body.starts_at, ends_at=body.ends_at, capacity=body.capacity, taken=0,
                 min_age=body.min_age, max_age=body.max_age, groups=list(body.groups), points=body.points,
                 volunteer_minutes=body.volunteer_minutes, status="open", created_by=principal.caller, version=1,
                 created_at=now, updated_at=now)
    session.add(a)
    await session.flush()
    _event(session, a, "published", now, capacity=a.capacity)
    return a


async def get_activity(session: AsyncSession, activity_id: str, *, for_update: bool = False) -> Activity:
    return await get_or_404(session, Activity, activity_id, NotFound("activity.not_found", NOT_FOUND),
                            for_update=for_update)


async def set_status(session: AsyncSession, principal: Principal, activity_id: str, body: StatusBody, *,
                     now: datetime) -> Activity:
    await _write_first(session, activity_id)
    a = await get_activity(session, activity_id, for_update=True)
    if not manages(principal, a):
        raise Forbidden(("无权取消该活动", "You may not cancel this activity"), code="activity.not_organiser")
    check_version(body.version, a.version, "activity.version_conflict",
                  ("活动已被他人修改，请刷新后重试", "The activity changed; reload and retry"))
    if a.status == "cancelled":
        raise Conflict("activity.cancelled", ("活动已取消", "The activity is cancelled"))
    a.status, a.version, a.updated_at = "cancelled", a.version + 1, now
    await session.execute(update(ActivitySignup).where(ActivitySignup.activity_id == a.id,
                                                       ActivitySignup.state.in_(("signed_up", "waitlisted")))
                          .values(state="cancelled", updated_at=now, version=ActivitySignup.version + 1))
    _event(session, a, "cancelled", now, reason=body.reason)
    return a


def _open_for_signup(a: Activity, now: datetime) -> None:
    if a.status == "cancelled":
        raise Conflict("activity.cancelled", ("活动已取消，不能报名", "The activity is cancelled"))
    if now >= a.starts_at:
        raise Conflict("activity.started", ("活动已开始，报名已截止", "The activity has started; sign-up is closed"))


async def _participant(session: AsyncSession, principal: Principal, a: Activity, body: SignupCreate) -> str:
    """The person signing up, checked against the activity's eligibility (403 for a resident outside it; 422 for
    staff naming someone unknown or outside their places)."""
    own = principal.role in ("resident", "proxy")
    not_eligible = Forbidden(("不符合该活动的报名条件", "You do not meet this activity's eligibility"),
                             code="activity.not_eligible")
    if own:
        person = principal.person_id
        if person is None or body.person_id not in (None, person):
            raise Forbidden(("只能为本人（或受托人）报名", "You may only sign up yourself"), code="activity.not_own")
    elif staff_of(principal, a.place_code) and body.person_id:
        person = body.person_id
    else:
        raise Forbidden(("无权为他人报名该活动", "You may not sign people up for this activity"),
                        code="activity.not_allowed")
    place = await known_person(session, person)
    if place is None or not (own or staff_of(principal, place.grid_code)):
        if own:
            raise not_eligible
        raise invalid("person_id", "activity.person_unknown", "居民不存在或不在您的辖区",
                      "Unknown person, or not within your places")
    if not place.grid_code.startswith(a.eligible_scope):
        raise not_eligible
    if body.role == "volunteer":
        vol = (await session.execute(select(Volunteer.id).where(Volunteer.person_id == person,
                                                                Volunteer.status == "active"))).first()
        if vol is None:
            raise invalid("role", "activity.not_volunteer", "该居民不是登记在册的志愿者",
                          "This person is not a registered volunteer")
        return person
    if a.min_age is not None or a.max_age is not None:
        if body.age is None:
            raise invalid("age", "activity.age_required", "该活动限年龄，请填写年龄", "This activity needs an age")
        if (a.min_age is not None and body.age < a.min_age) or (a.max_age is not None and body.age > a.max_age):
            raise not_eligible
    if a.groups and not set(a.groups) & set(body.groups):
        raise not_eligible
    return person


async def _take(session: AsyncSession, a: Activity) -> bool:
    won = (await session.execute(update(Activity).where(Activity.id == a.id, Activity.taken < Activity.capacity)
                                 .values(taken=Activity.taken + 1).returning(Activity.id))).first()
    return won is not None


async def sign_up(session: AsyncSession, principal: Principal, activity_id: str, body: SignupCreate, *,
                  now: datetime) -> ActivitySignup:
    await _write_first(session, activity_id)
    # the activity's row locked first (PostgreSQL; SQLite's writer lock above): one person's sign-ups fired at once
    # find the first one's row instead of both inserting one
    a = await get_activity(session, activity_id, for_update=True)
    _open_for_signup(a, now)
    person = await _participant(session, principal, a, body)
    existing = (await session.execute(select(ActivitySignup).where(
        ActivitySignup.activity_id == a.id, ActivitySignup.person_id == person).with_for_update())
        ).scalar_one_or_none()
    if existing is not None and existing.state != "cancelled":
        raise Conflict("activity.already_signed_up", ("已报名该活动", "Already signed up"),
                       extra={"signup_id": existing.id})
    if body.role == "volunteer":
        state = "signed_up"                      # volunteers serve; they take no participant's place
    elif await _take(session, a):
        state = "signed_up"
    elif body.waitlist:
        state = "waitlisted"
    else:
        raise Conflict("activity.full", ("活动名额已满", "The activity is full"))
    if existing is not None:
        s = existing
        s.role, s.state, s.signed_up_by, s.version, s.updated_at = body.role, state, principal.caller, \
            s.version + 1, now
        s.created_at = now                        # back of the waitlist
    else:
        s = ActivitySignup(id=new_id(), activity_id=a.id, person_id=person, role=body.role, state=state,
                           signed_up_by=principal.caller, version=1, created_at=now, updated_at=now)
        session.add(s)
    await session.flush()
    _event(session, a, "signed_up", now, subject=s.id, role=s.role, state=state, person_id=person)
    if state == "signed_up":
        signup_notice(session, s, a, "confirmed", now)
    return s


def may_see_signup(principal: Principal, a: Activity, s: ActivitySignup) -> bool:
    return is_own(principal, s.person_id) or manages(principal, a)


async def cancel_signup(session: AsyncSession, principal: Principal, activity_id: str, signup_id: str, *,
                        now: datetime) -> ActivitySignup:
    await _write_first(session, activity_id)
    a = await get_activity(session, activity_id)
    s = await get_or_404(session, ActivitySignup, signup_id, NotFound("activity.signup_not_found",
                                                                      ("报名不存在", "Sign-up not found")),
                         visible=lambda s: s.activity_id == a.id and may_see_signup(principal, a, s), for_update=True)
    if s.state not in ("signed_up", "waitlisted"):
        raise Conflict("activity.signup_closed", ("该报名已签到或已取消", "Checked in or cancelled already"))
    held = s.state == "signed_up" and s.role == "participant"
    s.state, s.version, s.updated_at = "cancelled", s.version + 1, now
    _event(session, a, "signup_cancelled", now, subject=s.id, role=s.role, person_id=s.person_id)
    if held:
        await session.execute(update(Activity).where(Activity.id == a.id, Activity.taken > 0)
                              .values(taken=Activity.taken - 1))
        nxt = (await session.execute(select(ActivitySignup).where(
            ActivitySignup.activity_id == a.id, ActivitySignup.state == "waitlisted")
            .order_by(ActivitySignup.created_at, ActivitySignup.id).limit(1).with_for_update())).scalar_one_or_none()
        if nxt is not None and a.status == "open" and await _take(session, a):
            nxt.state, nxt.version, nxt.updated_at = "signed_up", nxt.version + 1, now
            _event(session, a, "promoted", now, subject=nxt.id, role=nxt.role, person_id=nxt.person_id)
            signup_notice(session, nxt, a, "promoted", now)
    await session.flush()
    return s


def may_check_in(principal: Principal, a: Activity, kiosks: list[str]) -> bool:
    """Staff of the activity's place (or ops), the organising organisation, or a kiosk at the venue."""
    return manages(principal, a) or (principal.role == "system" and principal.member in kiosks)


async def check_in(session: AsyncSession, principal: Principal, activity_id: str, person_id: str, *, now: datetime,
                   kiosks: list[str]) -> tuple[ActivitySignup, bool]:
    """(sign-up, new): the person's check-in and its credit, once; a repeated check-in returns the first."""
    await _write_first(session, activity_id)
    a = await get_activity(session, activity_id)
    if not may_check_in(principal, a, kiosks):
        raise Forbidden(("无权为该活动签到", "You may not check people in to this activity"),
                        code="activity.not_allowed")
    if a.status == "cancelled":
        raise Conflict("activity.cancelled", ("活动已取消", "The activity is cancelled"))
    if not (a.starts_at - CHECK_IN_EARLY <= now < a.ends_at):
        raise Conflict("activity.check_in_window", ("只能在活动开始前 1 小时至结束前签到",
                                                    "Check-in opens an hour before the start and ends with it"))
    s = (await session.execute(select(ActivitySignup).where(ActivitySignup.activity_id == a.id,
                                                            ActivitySignup.person_id == person_id)
                               .with_for_update())).scalar_one_or_none()
    if s is not None and s.state == "checked_in":
        return s, False
    if s is None or s.state != "signed_up":
        raise invalid("person_id", "activity.not_signed_up", "该居民未报名本活动（或仍在候补）",
                      "This person has not signed up (or is still waitlisted)")
    place = await known_person(session, person_id)
    grid = place.grid_code if place else None
    community = (place.community_code if place else None) or a.place_code[:12]
    minutes = a.volunteer_minutes or int((a.ends_at - a.starts_at).total_seconds() // 60)
    unit, amount, kind = ("minute", minutes, "volunteer_service") if s.role == "volunteer" else \
        ("point", a.points, "community_activity")
    s.state, s.checked_in_at, s.checked_in_by, s.version, s.updated_at = "checked_in", now, principal.caller, \
        s.version + 1, now
    if amount > 0:
        posting, _ = await credit_member(session, person_id=person_id, community=community, unit=unit, amount=amount,
                                         client_posting_id=f"activity:{a.id}:{person_id}", memo=a.title[:300],
                                         reference=a.id, created_by=principal.caller, now=now, activity=kind,
                                         grid=grid)
        s.posting_id = posting.id
    else:  # nothing to credit: taking part still counts for the participation indicator
        record_event(session, OutboxEvent, "participation.recorded", subject=s.id,
                     data={"person_id": person_id, "activity": kind, "posting_id": None, "unit": None, "amount": 0},
                     community=grid[:12] if grid else community, grid=grid, now=now)
    _event(session, a, "checked_in", now, subject=s.id, role=s.role, person_id=person_id, unit=unit, amount=amount)
    await session.flush()
    return s, True
