"""Votes, resolutions and follow-up (thin HTTP layer; rules in votes / resolutions)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from common.acting import acts
from common.auth import Principal, require_roles
from common.deps import AppClock, AppDb, DbSession
from svc_services.deliberation import resolutions, votes
from svc_services.deliberation.access import PARTAKERS, get_topic
from svc_services.deliberation.schemas import (
    BallotIn, BallotOut, NamedBallotOut, ReportIn, ResolutionIn, ResolutionOut, TaskOut, VoteIn, VoteOut,
)

router = APIRouter(prefix="/services/v1/topics/{topic_id}", tags=["deliberation 居民议事"])
PathId = Annotated[str, Path(min_length=1, max_length=36)]
PARTAKER = Depends(require_roles(*PARTAKERS))


@router.post("/vote", status_code=201, response_model=VoteOut, summary="发起表决 Set up the vote")
async def create_vote(session: DbSession, clock: AppClock, body: VoteIn, topic_id: PathId,
                      principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        v = await votes.create_vote(session, principal, t, body, clock.now())
    return VoteOut.model_validate(v)


@router.get("/vote", response_model=VoteOut, summary="表决与结果 The vote and, once closed, its frozen result")
async def read_vote(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    return VoteOut.model_validate(await votes.vote_of(session, t))


@router.get("/vote/ballots", response_model=list[NamedBallotOut],
            summary="记名投票明细（计票后） Who voted what, for a named vote once counted")
async def list_named_ballots(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    return [NamedBallotOut(person_id=b.person_id, option=b.option, revision=b.revision, cast_at=b.cast_at,
                           counted=counted) for b, counted in await votes.named_ballots(session, t)]


@router.post("/ballots", response_model=BallotOut, summary="投票（可改票时截止前可再次提交） Cast a ballot",
             dependencies=[acts("deliberation.vote")])
async def cast(db: AppDb, clock: AppClock, body: BallotIn, topic_id: PathId,
               principal: Principal = PARTAKER):
    c = await votes.cast_ballot(db, principal, topic_id, body.option, clock.now())
    return BallotOut(vote_id=c.vote.id, option=c.ballot.option, revision=c.ballot.revision,
                     receipt=votes.receipt(c.vote.id, c.ballot))


@router.post("/vote/close", response_model=VoteOut, summary="截止计票（结果冻结） Close and count the vote")
async def close_vote(session: DbSession, clock: AppClock, topic_id: PathId,
                     principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        v = await votes.close_vote(session, principal, t, clock.now())
    return VoteOut.model_validate(v)


@router.get("/vote/verify", summary="核验计票哈希 Verify the tally against the ballots")
async def verify_vote(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    r = await votes.verify_tally(session, await votes.vote_of(session, t))
    return {"ok": r.ok, "ballots": r.ballots, "tally_hash": r.tally_hash, "reason": r.reason}


async def _resolution_out(session, r) -> ResolutionOut:
    tasks = await resolutions.tasks_of(session, r.id)
    return ResolutionOut.model_validate(r).model_copy(update={"tasks": [TaskOut.model_validate(x) for x in tasks]})


@router.post("/resolution", status_code=201, response_model=ResolutionOut,
             summary="形成决议并分解任务 Adopt the resolution with its tasks")
async def create_resolution(session: DbSession, clock: AppClock, body: ResolutionIn, topic_id: PathId,
                            principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        r = await resolutions.create_resolution(session, principal, t, body, clock.now())
        await session.flush()
        return await _resolution_out(session, r)


@router.get("/resolution", response_model=ResolutionOut, summary="决议与落实情况 The resolution and its tasks")
async def read_resolution(session: DbSession, topic_id: PathId, principal: Principal = PARTAKER):
    t = await get_topic(session, principal, topic_id)
    return await _resolution_out(session, await resolutions.resolution_of(session, t))


@router.post("/resolution/tasks/{task_id}/reports", response_model=TaskOut,
             summary="报告任务进展（100% 即办结） Report progress on a task")
async def report(session: DbSession, clock: AppClock, body: ReportIn, topic_id: PathId, task_id: PathId,
                 principal: Principal = PARTAKER):
    async with session.begin():
        t = await get_topic(session, principal, topic_id, for_update=True)
        task = await resolutions.report(session, principal, t, task_id, body, clock.now())
    return TaskOut.model_validate(task)

