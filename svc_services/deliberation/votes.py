"""Votes (表决): eligibility by scope and residency, one ballot per voter by a unique key, changes until close
when the topic allows, a tally at close that is frozen, each ballot hashed into it (verify_tally)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from common.auth import Principal
from common.clock import age_on, local_date, years_before
from common.db import Database
from common.errors import Conflict, Forbidden, NotFound, invalid
from common.ids import new_id
from svc_services.deliberation.access import elector_of, get_topic, in_scope, require_manager
from svc_services.deliberation.models import Ballot, Elector, Topic, Vote
from svc_services.deliberation.rules import carried, quorum_met, settle
from svc_services.deliberation.schemas import VoteIn
from svc_services.deliberation.topics import event, move, participated

NO_VOTE = NotFound("vote.not_found", ("该议题没有表决", "This topic has no vote"))
ADULT = 18


async def vote_of(session: AsyncSession, topic: Topic, *, for_update: bool = False) -> Vote:
    stmt = select(Vote).where(Vote.topic_id == topic.id)
    v = (await session.execute(stmt.with_for_update() if for_update else stmt)).scalar_one_or_none()
    if v is None:
        raise NO_VOTE
    return v


async def create_vote(session: AsyncSession, principal: Principal, topic: Topic, body: VoteIn, now: datetime) -> Vote:
    require_manager(principal, topic)
    if len(set(body.options)) != len(body.options):
        raise invalid("options", "vote.duplicate_option", "选项不能重复", "Options must differ")
    if body.closes_at <= body.opens_at:
        raise invalid("closes_at", "vote.window", "截止时间须晚于开始时间", "closes_at must follow opens_at")
    if body.closes_at <= now:
        raise invalid("closes_at", "vote.in_past", "截止时间须晚于现在", "closes_at must be in the future")
    quorum_percent = settle(topic.category, body.rule, body.quorum_rule, body.quorum_percent)
    if (await session.execute(select(Vote.id).where(Vote.topic_id == topic.id))).first():
        raise Conflict("vote.exists", ("该议题已有表决", "This topic already has a vote"))
    v = Vote(id=new_id(), topic_id=topic.id, status="open", **{**body.model_dump(), "quorum_percent": quorum_percent})
    session.add(v)
    await move(session, topic, "call_vote", principal, now)
    return v


def _voter_key(vote: Vote, elector: Elector) -> str:
    return f"household:{elector.household_id}" if vote.eligibility == "household" else elector.person_id


def _eligible(vote: Vote, elector: Elector | None, topic: Topic, now: datetime) -> Elector:
    if not in_scope(elector, topic.scope_code):
        raise Forbidden(("您不在本次表决的范围内", "You are not in this vote's scope"), code="vote.outside_scope")
    if vote.eligibility == "household_head" and not elector.household_head:
        raise Forbidden(("本次表决由户主投票", "Only heads of household vote"), code="vote.not_household_head")
    if vote.eligibility == "adult" and (elector.birth_date is None
                                        or age_on(elector.birth_date, local_date(now)) < ADULT):
        raise Forbidden(("本次表决由成年居民投票", "Only adults vote"), code="vote.not_adult")
    return elector


def _open_for_ballots(vote: Vote, topic: Topic, now: datetime) -> None:
    if vote.status != "open" or now >= vote.closes_at or topic.stage != "voting":
        raise Conflict("vote.closed", ("表决已截止", "The vote is closed"))
    if now < vote.opens_at:
        raise Conflict("vote.not_open", ("表决尚未开始", "The vote has not opened"))


class _Taken(Exception):
    """The voter's key is already in the ballot table (the unique constraint said so)."""


@dataclass
class Cast:
    vote: Vote
    ballot: Ballot


async def cast_ballot(db: Database, principal: Principal, topic_id: str, option: str, now: datetime) -> Cast:
    """Insert first: the unique (vote, voter) lets exactly one of concurrent first ballots in; a later one
    changes that ballot when the vote allows it (same person), else it is refused. Nothing else is written."""
    try:
        async with db.session() as session, session.begin():
            topic, vote, elector = await _check(session, principal, topic_id, option, now)
            b = Ballot(id=new_id(), vote_id=vote.id, voter_key=_voter_key(vote, elector), person_id=elector.person_id,
                       option=option, revision=1, cast_at=now)
            session.add(b)
            try:
                await session.flush()
            except IntegrityError:
                raise _Taken() from None
            participated(session, elector, "deliberation.vote", now)
            return Cast(vote, b)
    except _Taken:
        pass
    async with db.session() as session, session.begin():
        topic, vote, elector = await _check(session, principal, topic_id, option, now)
        if not vote.changeable:
            raise Conflict("ballot.duplicate", ("您已投票，本次表决不可改票", "You have voted; this vote takes no changes"))
        key = _voter_key(vote, elector)
        done = await session.execute(update(Ballot).where(
            Ballot.vote_id == vote.id, Ballot.voter_key == key, Ballot.person_id == elector.person_id)
            .values(option=option, revision=Ballot.revision + 1, cast_at=now))
        if done.rowcount != 1:
            raise Conflict("ballot.duplicate", ("本户已由其他成员投票", "Another member of the household has voted"))
        b = (await session.execute(select(Ballot).where(Ballot.vote_id == vote.id, Ballot.voter_key == key)
                                   .execution_options(populate_existing=True))).scalar_one()
        return Cast(vote, b)


async def _check(session: AsyncSession, principal: Principal, topic_id: str, option: str, now: datetime):
    topic = await get_topic(session, principal, topic_id)
    vote = await vote_of(session, topic)
    _open_for_ballots(vote, topic, now)
    if option not in vote.options:
        raise invalid("option", "ballot.unknown_option", "没有这个选项", "No such option")
    if principal.role not in ("resident", "proxy"):
        raise Forbidden(("表决由居民本人（或其代办人）投票", "Residents (or their proxies) vote"), code="vote.residents_only")
    return topic, vote, _eligible(vote, await elector_of(session, principal), topic, now)


def receipt(vote_id: str, b: Ballot) -> str:
    """A ballot's hash: the voter's key is hashed in, never shown (a secret ballot stays secret)."""
    body = json.dumps([vote_id, b.id, hashlib.sha256(b.voter_key.encode()).hexdigest(), b.option, b.revision],
                      ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def chain(vote_id: str, receipts: list[str]) -> str:
    h = hashlib.sha256(f"onenet-tally:{vote_id}".encode()).hexdigest()
    for r in receipts:
        h = hashlib.sha256((h + r).encode()).hexdigest()
    return h


async def _ballots(session: AsyncSession, vote: Vote) -> list[Ballot]:
    return list((await session.execute(select(Ballot).where(Ballot.vote_id == vote.id).order_by(Ballot.id)))
                .scalars())


async def named_ballots(session: AsyncSession, topic: Topic) -> list[tuple[Ballot, bool]]:
    """记名投票: who chose what, once counted, for whoever sees the topic (the caller was checked by get_topic),
    each with whether it was counted (a voter no longer eligible at close is set aside, see close_vote).
    A secret ballot stays secret for everyone; before the count no choice is shown (it would sway the rest)."""
    vote = await vote_of(session, topic)
    if vote.secret:
        raise Forbidden(("本次表决为无记名投票，不公开个人选择", "A secret ballot: nobody's choice is shown"),
                        code="vote.secret")
    if vote.status != "closed":
        raise Conflict("vote.not_closed", ("记名投票结果在计票后公开", "Named ballots are shown once counted"))
    aside = set(vote.result.get("set_aside") or [])
    return [(b, receipt(vote.id, b) not in aside) for b in await _ballots(session, vote)]


async def electorate(session: AsyncSession, vote: Vote, topic: Topic, now: datetime) -> set[str]:
    """The voter keys eligible at `now` by the replica (the same rule as _eligible): what a vote is counted
    against at close. One per household: every household with a member in the scope."""
    where = (Elector.building_code.startswith(topic.scope_code), Elector.removed.is_(False))
    if vote.eligibility == "household":
        rows = await session.execute(select(Elector.household_id).where(*where).distinct())
        return {f"household:{h}" for h in rows.scalars()}
    stmt = select(Elector.person_id).where(*where)
    if vote.eligibility == "household_head":
        stmt = stmt.where(Elector.household_head.is_(True))
    else:
        stmt = stmt.where(Elector.birth_date <= years_before(local_date(now), ADULT))
    return set((await session.execute(stmt)).scalars())


def _tally(vote: Vote, ballots: list[Ballot], electors: set[str]) -> dict:
    """Eligibility is decided at close: a ballot whose voter key is not in the electorate then (moved out of the
    scope, no longer head of household, off the register) is set aside: kept, its receipt listed, not counted,
    so what is cast is always part of what is eligible."""
    counted = [b for b in ballots if b.voter_key in electors]
    counts = {o: 0 for o in vote.options}
    for b in counted:
        counts[b.option] += 1
    cast, eligible = len(counted), len(electors)
    motion = counts[vote.options[0]]  # the first option is the motion (同意)
    quorum = quorum_met(vote.quorum_rule, vote.quorum_percent, cast, eligible)
    return {"counts": counts, "cast": cast, "eligible": eligible, "quorum_met": quorum,
            "passed": quorum and carried(vote.rule, motion, cast), "receipts": [receipt(vote.id, b) for b in counted],
            "set_aside": [receipt(vote.id, b) for b in ballots if b.voter_key not in electors]}


async def close_vote(session: AsyncSession, principal: Principal | None, topic: Topic, now: datetime) -> Vote:
    """Computes the result once, at or after the closing time, and freezes it with the tally hash (the chain of
    the counted ballots' receipts)."""
    if principal is not None:
        require_manager(principal, topic)
    vote = await vote_of(session, topic, for_update=True)
    if vote.status == "closed":
        raise Conflict("vote.already_closed", ("表决已计票", "The vote was already counted"))
    result = _tally(vote, await _ballots(session, vote), await electorate(session, vote, topic, now))
    # before its closing time only once every eligible voter has voted (nobody left to wait for)
    if now < vote.closes_at and result["cast"] < result["eligible"]:
        raise Conflict("vote.not_due", ("表决尚未到截止时间", "The vote has not reached its closing time"))
    vote.status, vote.result, vote.closed_at = "closed", result, now
    vote.tally_hash = chain(vote.id, result["receipts"])
    aside = f"，不再具备资格（迁出等）的 {len(result['set_aside'])} 票不计" if result["set_aside"] else ""
    await move(session, topic, "pass" if result["passed"] else "fail", "system:tally", now,
               f"应投 {result['eligible']}，实投 {result['cast']}{aside}")
    event(session, "deliberation.vote_closed", topic, now, eligible=result["eligible"], cast=result["cast"],
          passed=result["passed"], quorum_met=result["quorum_met"])
    return vote


async def close_due(db: Database, now: datetime, *, limit: int = 100) -> int:
    """The background scan: counts each vote whose closing time has passed (staff may count earlier once everyone
    eligible has voted), each in its own transaction, topic then vote locked as POST …/vote/close does."""
    async with db.session() as session:
        due = list((await session.execute(select(Vote.topic_id).where(Vote.status == "open", Vote.closes_at <= now)
                                          .order_by(Vote.closes_at).limit(limit))).scalars())
    closed = 0
    for topic_id in due:
        try:
            async with db.session() as session, session.begin():
                topic = await session.get(Topic, topic_id, with_for_update=True)
                await close_vote(session, None, topic, now)
                closed += 1
        except Conflict:
            pass  # counted meanwhile (by staff, or another instance's scan)
    return closed


@dataclass
class Verified:
    ok: bool
    ballots: int
    tally_hash: str | None
    reason: str | None = None


async def verify_tally(session: AsyncSession, vote: Vote) -> Verified:
    """Recomputes every ballot's hash and the chain from the ballot table and compares them with the frozen
    result: a ballot changed, added or removed after the close is named (a set-aside one as well)."""
    if vote.status != "closed" or not vote.result:
        return Verified(False, 0, None, "表决尚未计票 not counted yet")
    all_ = [(b, receipt(vote.id, b)) for b in await _ballots(session, vote)]
    aside = list(vote.result.get("set_aside") or [])
    gone = set(aside) - {r for _b, r in all_}
    if gone:
        return Verified(False, len(all_), vote.tally_hash, f"不计的票被改动或删除 {len(gone)} set-aside ballot(s) altered")
    ballots = [b for b, r in all_ if r not in aside]
    now = [r for _b, r in all_ if r not in aside]
    frozen = list(vote.result.get("receipts") or [])
    if len(now) != len(frozen):
        return Verified(False, len(now), vote.tally_hash, f"票数不符 {len(now)} ≠ {len(frozen)} ballots")
    for i, (a, b) in enumerate(zip(now, frozen, strict=True)):
        if a != b:
            return Verified(False, len(now), vote.tally_hash, f"第 {i + 1} 张票被改动 ballot {ballots[i].id} altered")
    if chain(vote.id, frozen) != vote.tally_hash:
        return Verified(False, len(now), vote.tally_hash, "结果哈希不符 tally hash mismatch")
    counts = {o: 0 for o in vote.options}
    for b in ballots:
        counts[b.option] = counts.get(b.option, 0) + 1
    if counts != vote.result.get("counts"):
        return Verified(False, len(now), vote.tally_hash, "计票结果与选票不符 counts differ from ballots")
    return Verified(True, len(now), vote.tally_hash)
