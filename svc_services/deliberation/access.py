"""Who may see and do what with a topic: residents of its scope (by the elector replica), place staff whose
places meet the scope, departments invited to one of its meetings (吹哨报到), ops. One place for these rules."""
from __future__ import annotations

from sqlalchemy import false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.errors import Forbidden, NotFound
from common.lookup import get_or_404
from svc_services.deliberation.lifecycle import GRID, MANAGERS
from svc_services.deliberation.models import Elector, Meeting, Resolution, ResolutionTask, Topic

PLACE_KINDS = ("district", "street", "community", "grid")
TOPIC_NOT_FOUND = NotFound("topic.not_found", ("没有这个议题", "No such topic"))


# who takes part at all: member systems (a kiosk, the registry's feed) and evaluators (aggregates only) do not
PARTAKERS = ("resident", "proxy", "grid_worker", "community_staff", "street_staff", "dept_staff", "provider", "ops")


def places(principal: Principal) -> list[str]:
    return [v for k in PLACE_KINDS for v in principal.scope_values(k)]


async def elector_of(session: AsyncSession, principal: Principal) -> Elector | None:
    """The caller's own residency (a proxy: their person's), None for staff or a person the replica lacks."""
    if principal.role not in ("resident", "proxy") or not principal.person_id:
        return None
    row = await session.get(Elector, principal.person_id)
    return None if row is None or row.removed else row


def in_scope(elector: Elector | None, scope_code: str) -> bool:
    return elector is not None and elector.building_code.startswith(scope_code)


def staff_meets(principal: Principal, scope_code: str) -> bool:
    """Place staff whose places hold the scope, or lie inside it (a grid worker sees their community's topics)."""
    if principal.role == "ops":
        return True
    if principal.role not in MANAGERS + GRID:
        return False
    return any(scope_code.startswith(p) or p.startswith(scope_code) for p in places(principal))


def manages(principal: Principal, topic: Topic) -> bool:
    """Runs the topic: community / street staff and ops over its scope; a grid worker only for a scope within
    their grid (a building or the grid itself)."""
    return principal.role == "ops" or (principal.role in MANAGERS + GRID and principal.covers_place(topic.scope_code))


def require_manager(principal: Principal, topic: Topic) -> None:
    if not manages(principal, topic):
        raise Forbidden(("只有负责该范围的社区工作人员可以操作", "Only staff over the topic's scope may do this"),
                        code="topic.not_manager")


async def may_see(session: AsyncSession, principal: Principal, topic: Topic) -> bool:
    if staff_meets(principal, topic.scope_code):
        return True
    if principal.role in ("resident", "proxy"):
        return in_scope(await elector_of(session, principal), topic.scope_code)
    if principal.role in ("dept_staff", "provider"):
        return await _involved(session, principal, topic)
    return False


async def _involved(session: AsyncSession, principal: Principal, topic: Topic) -> bool:
    """A department invited to one of the topic's meetings (吹哨报到), or a department / provider owning one of
    its resolution's tasks."""
    kind = "dept" if principal.role == "dept_staff" else "provider"
    mine = set(principal.scope_values(kind))
    if not mine:
        return False
    if kind == "dept":
        meetings = (await session.execute(select(Meeting.members).where(Meeting.topic_id == topic.id))).scalars()
        if any(m.get("kind") == "department" and m.get("ref") in mine for ms in meetings for m in ms):
            return True
    owner = "department" if kind == "dept" else "provider"
    hit = await session.execute(select(ResolutionTask.id).join(Resolution, Resolution.id == ResolutionTask.resolution_id)
                                .where(Resolution.topic_id == topic.id, ResolutionTask.owner_kind == owner,
                                       ResolutionTask.owner_ref.in_(mine)).limit(1))
    return hit.first() is not None


async def get_topic(session: AsyncSession, principal: Principal, topic_id: str, *, for_update: bool = False) -> Topic:
    return await get_or_404(session, Topic, topic_id, TOPIC_NOT_FOUND, for_update=for_update,
                            visible=lambda t: may_see(session, principal, t))


async def visible_filter(session: AsyncSession, principal: Principal):
    """A WHERE clause for the topics list (the same rule as may_see, departments aside: they open by id)."""
    if principal.role == "ops":
        return None
    if principal.role in MANAGERS + GRID:
        ps = places(principal)
        conds = [Topic.scope_code.startswith(p) for p in ps]
        conds += [Topic.scope_code.in_([p[:n] for n in (12, 15, 18) if n <= len(p)]) for p in ps]
        return or_(*conds) if conds else false()
    e = await elector_of(session, principal)
    if e is None:
        return false()
    return Topic.scope_code.in_([e.building_code[:n] for n in (12, 15, 18)])
