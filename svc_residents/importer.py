"""Bulk import of paper ledgers (纸质台账) from CSV or XLSX into households and persons.

- Columns by their Chinese ledger headers (or English names): 姓名, 身份证号, 手机号, 网格编码, 楼栋编码, 地址,
  户籍类型, 与户主关系, 特殊群体. Rows with the same grid and address form one household.
- Every row is checked with the same rules as the API (ID checksum and birth date, phone, grid, building,
  residency type, tag codes); errors go to `<file>.errors.csv` beside the file: row, column, reason (Chinese).
- All-or-nothing per batch: a batch with any bad row writes nothing; the others are imported.
- Idempotent: a person whose ID number is already registered (blind index) is skipped, a household with the same
  grid and address is reused, so a corrected file can simply be imported again.
- The writes are Core executemany inserts (one per table per batch, no RETURNING), with the same encryption, blind index and
  outbox events as the API (the requester-profile feed row to svc_services included).
"""
from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from common.clock import Clock
from common.db import Database
from common.ids import new_id
from svc_residents import protection as prot
from svc_residents.base import OutboxEvent
from svc_residents.codes import RESIDENCY, RESIDENCY_ZH, TAGS
from svc_residents.households.models import Household
from svc_residents.persons import elector_feed, place_feed
from svc_residents.persons import profile_feed as feed
from svc_residents.persons.models import Person, PersonTag
from svc_residents.places.models import Place
from svc_residents.protection import FieldProtection, ValidationFailure

COLUMNS = {  # canonical field -> accepted headers
    "name": ("姓名", "name"),
    "id_number": ("身份证号", "公民身份号码", "id_number"),
    "phone": ("手机号", "联系电话", "phone"),
    "grid_code": ("网格编码", "grid_code"),
    "building_code": ("楼栋编码", "building_code"),
    "address": ("地址", "住址", "address"),
    "residency_type": ("户籍类型", "人口类型", "residency_type"),
    "relation_to_head": ("与户主关系", "relation_to_head"),
    "tags": ("特殊群体", "标签", "tags"),
}
HEADER_ZH = {k: v[0] for k, v in COLUMNS.items()}
REQUIRED = ("name", "id_number", "grid_code", "address", "residency_type")
HEAD_WORDS = {"户主", "本人", "head", "self"}
TAG_BY_LABEL = {**{code: code for code in TAGS}, **{zh: code for code, (zh, _) in TAGS.items()},
                **{"老年人": "elderly", "独居老人": "living_alone", "独居": "living_alone", "高龄": "very_old",
                   "高龄老人": "very_old", "残疾人": "disabled", "残疾": "disabled", "低保户": "dibao",
                   "低收入": "low_income", "特困": "tekun", "留守儿童": "left_behind_child",
                   "流动儿童": "left_behind_child", "婴幼儿": "infant", "双职工": "dual_earner"}}
IMPORTER = "import/ledger"


@dataclass
class RowError:
    row: int
    column: str
    reason: str


@dataclass
class ImportResult:
    rows: int = 0
    imported: int = 0
    skipped_existing: int = 0
    households_created: int = 0
    rejected_batches: int = 0
    not_written: int = 0  # good rows in a rejected batch
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    report: Path | None = None


# ---------------------------------------------------------------- reading

def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(row number as the user sees it, {canonical field: text}) for each data row of a CSV or XLSX file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            yield from _rows(header, reader)
    elif suffix in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        wb = load_workbook(path, read_only=True, data_only=True)
        try:
            it = wb.active.iter_rows(values_only=True)
            yield from _rows(next(it, None), it)
        finally:
            wb.close()
    else:
        raise ValueError(f"不支持的文件类型 {suffix}（请使用 .csv 或 .xlsx）")


def _rows(header, rows: Iterable) -> Iterator[tuple[int, dict[str, str]]]:
    if not header:
        return
    index: dict[int, str] = {}
    lookup = {h.lower(): k for k, hs in COLUMNS.items() for h in hs}
    for i, h in enumerate(header):
        key = lookup.get(str(h or "").strip().lower())
        if key:
            index[i] = key
    missing = [HEADER_ZH[k] for k in REQUIRED if k not in index.values()]
    if missing:
        raise ValueError("表头缺少必填列：" + "、".join(missing))
    for n, raw in enumerate(rows, start=2):
        values = {key: _text(raw[i]) if i < len(raw) else "" for i, key in index.items()}
        if any(values.values()):
            yield n, values


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # spreadsheet numbers (phone, codes)
    return str(v).strip()


# ---------------------------------------------------------------- checking

@dataclass
class Parsed:
    row: int
    name: str
    number: str
    birth_date: Any
    sex: str
    phone: str | None
    grid_code: str
    community_code: str
    building_code: str | None
    address: str
    residency_type: str
    relation_to_head: str | None
    is_head: bool
    tags: list[str]


def check_row(n: int, v: dict[str, str], places: dict[str, tuple[str, str | None]],
              errors: list[RowError], *, today: date | None = None) -> Parsed | None:
    start = len(errors)

    def err(col: str, reason: str) -> None:
        errors.append(RowError(n, HEADER_ZH[col], reason))

    for col in REQUIRED:
        if not v.get(col):
            err(col, "必填项为空")
    name = v.get("name", "")
    if len(name) > 50:
        err("name", "姓名超过 50 个字符")
    rid = None
    if v.get("id_number"):
        try:
            rid = prot.parse_resident_id(v["id_number"], today=today)
        except ValidationFailure as exc:
            err("id_number", exc.message_zh)
    phone = None
    if v.get("phone"):
        try:
            phone = prot.normalize_mobile(v["phone"])
        except ValidationFailure as exc:
            err("phone", exc.message_zh)
    grid = v.get("grid_code", "")
    if grid and places.get(grid, ("",))[0] != "grid":
        err("grid_code", f"网格 {grid} 不存在")
    building = v.get("building_code") or None
    if building and (places.get(building, ("", None))[0] != "building" or places[building][1] != grid):
        err("building_code", f"楼栋 {building} 不存在或不在该网格内")
    if len(v.get("address", "")) > 200:
        err("address", "地址超过 200 个字符")
    residency = v.get("residency_type", "")
    residency = RESIDENCY_ZH.get(residency, residency if residency in RESIDENCY else None) if residency else None
    if v.get("residency_type") and residency is None:
        err("residency_type", "户籍类型应为 户籍、常住 或 流动人口")
    tags = []
    for label in filter(None, re.split(r"[,，、;；\s]+", v.get("tags", ""))):
        code = TAG_BY_LABEL.get(label)
        if code is None:
            err("tags", f"未知的特殊群体标签：{label}")
        elif code not in tags:
            tags.append(code)
    relation = v.get("relation_to_head") or None
    if len(errors) > start:
        return None
    return Parsed(n, name, rid.number, rid.birth_date, rid.sex, phone, grid, places[grid][1], building,
                  v["address"], residency, relation, (relation or "") in HEAD_WORDS, tags)


# ---------------------------------------------------------------- writing

async def import_file(db: Database, protection: FieldProtection, path: Path, *, dry_run: bool = False,
                      batch_size: int = 1000, on_progress: Callable[[int], None] | None = None,
                      clock: Clock | None = None) -> ImportResult:
    result = ImportResult(dry_run=dry_run)
    clock = clock or Clock()
    async with db.session() as s:
        places = {code: (level, parent) for code, level, parent in
                  (await s.execute(select(Place.code, Place.level, Place.parent_code))).all()}
        households = {(g, a): (i, c, head) for i, g, a, c, head in (await s.execute(
            select(Household.id, Household.grid_code, Household.address, Household.community_code,
                   Household.head_person_id))).all()}
    seen: dict[str, int] = {}  # blind index -> first row, for duplicates inside the file
    batch: list[tuple[int, dict[str, str]]] = []
    for item in read_rows(path):
        batch.append(item)
        if len(batch) >= batch_size:
            await _batch(db, protection, batch, places, households, seen, result, dry_run, clock)
            if on_progress:
                on_progress(len(batch))
            batch = []
    if batch:
        await _batch(db, protection, batch, places, households, seen, result, dry_run, clock)
        if on_progress:
            on_progress(len(batch))
    result.report = write_report(path, result.errors)
    return result


async def _existing(s, keys: list[str]) -> set[str]:
    """The blind indexes among `keys` already registered."""
    existing: set[str] = set()
    for i in range(0, len(keys), 500):
        existing |= set((await s.execute(select(Person.id_number_bidx)
                                         .where(Person.id_number_bidx.in_(keys[i:i + 500])))).scalars())
    return existing


class _Undo(Exception):
    """Raised inside a dry run's transaction so it rolls back."""


async def _batch(db, protection, rows, places, households, seen, result: ImportResult, dry_run: bool,
                 clock: Clock) -> None:
    result.rows += len(rows)
    errors: list[RowError] = []
    parsed: list[tuple[Parsed, str]] = []
    for n, values in rows:
        p = check_row(n, values, places, errors, today=clock.today())
        if p is None:
            continue
        bidx = prot.id_number_index(protection, p.number)
        if bidx in seen:
            errors.append(RowError(n, HEADER_ZH["id_number"], f"与第 {seen[bidx]} 行身份证号重复（一人一档）"))
            continue
        seen[bidx] = n
        parsed.append((p, bidx))
    if errors:
        async with db.session() as s:
            existing = await _existing(s, [b for _, b in parsed])
        result.errors.extend(errors)
        result.rejected_batches += 1
        result.not_written += sum(1 for _, b in parsed if b not in existing)
        return
    # The existence check and the inserts share one transaction, but another writer (the API, a second import)
    # can register the same ID number in between: the unique blind index then refuses the insert. The batch is
    # rolled back whole and tried once more, when those persons count as already registered (what a re-run
    # would do); if it is refused again, the rows concerned are reported and the batch is not written.
    for attempt in (1, 2):
        snapshot = dict(households)
        try:
            counts = await _write(db, protection, parsed, households, dry_run, clock.now())
        except IntegrityError:
            households.clear()
            households.update(snapshot)  # forget the households the failed attempt meant to create
            if attempt == 1:
                continue
            async with db.session() as s:
                existing = await _existing(s, [b for _, b in parsed])
            conflicts = [p.row for p, b in parsed if b in existing]
            for n in conflicts or [p.row for p, _ in parsed[:1]]:
                result.errors.append(RowError(
                    n, HEADER_ZH["id_number"] if conflicts else "",
                    "导入时该身份证号被同时登记（并发写入冲突），本批未写入，请重新导入" if conflicts
                    else "写入时发生并发冲突，本批未写入，请重新导入"))
            result.rejected_batches += 1
            result.not_written += sum(1 for _, b in parsed if b not in existing)
            return
        imported, skipped, created = counts
        result.imported += imported
        result.skipped_existing += skipped
        result.households_created += created
        return


async def _write(db, protection, parsed, households, dry_run: bool, now: datetime) -> tuple[int, int, int]:
    """One transaction: (persons imported, skipped as already registered, households created)."""
    skipped = 0
    try:
        async with db.session() as s, s.begin():
            existing = await _existing(s, [b for _, b in parsed])
            persons, tags, events, new_households, touched = [], [], [], [], {}
            heads: dict[str, str] = {}
            for p, bidx in parsed:
                if bidx in existing:
                    skipped += 1
                    continue
                key = (p.grid_code, p.address)
                if key not in households:
                    hid = new_id()
                    households[key] = (hid, p.community_code, None)
                    new_households.append(dict(id=hid, address=p.address, grid_code=p.grid_code,
                                               building_code=p.building_code, community_code=p.community_code,
                                               head_person_id=None, created_at=now, updated_at=now, version=1))
                hid, community, head = households[key]
                pid = new_id()
                snap = feed.snapshot(p.birth_date, [(code, None) for code in p.tags])
                enc = prot.protect_id_number(protection, pid, p.number, blind_index=bidx)
                ph = prot.protect_phone(protection, pid, p.phone) if p.phone else None
                persons.append(dict(
                    id=pid, household_id=hid, name=p.name, id_number_enc=enc.ciphertext, id_number_bidx=bidx,
                    id_number_masked=enc.masked, phone_enc=ph.ciphertext if ph else None,
                    phone_bidx=ph.blind_index if ph else None, phone_masked=ph.masked if ph else None,
                    birth_date=p.birth_date, sex=p.sex, residency_type=p.residency_type,
                    relation_to_head=p.relation_to_head, preferred_channel=None, accessibility_needs=[],
                    grid_code=p.grid_code, community_code=community, created_at=now, updated_at=now, version=1,
                    profile_version=1, profile_digest=feed.digest(snap)))
                # svc_services' requester-profile replica (birth date and tag codes only), as the API writes it
                events.append(feed.outbox_row(pid, 1, snap, now))
                events.append(place_feed.outbox_row(pid, 1, (p.grid_code, community), now))  # svc_matching's
                if p.is_head and head is None and hid not in heads:
                    heads[hid] = pid
                    households[key] = (hid, community, pid)
                touched.setdefault(hid, [p.grid_code, community, 0])[2] += 1
                events.append(_event("person.registered", pid, community, p.grid_code, now,
                                     {"household_id": hid, "residency_type": p.residency_type, "sex": p.sex,
                                      "source": "import"}))
                for code in p.tags:
                    tags.append(dict(id=new_id(), person_id=pid, code=code, source="staff", source_department=None,
                                     verified=False, verified_at=None, valid_until=None, note="纸质台账导入",
                                     recorded_by=IMPORTER, created_at=now, updated_at=now))
                    events.append(_event("person.tagged", pid, community, p.grid_code, now,
                                         {"code": code, "source": "staff", "verified": False, "valid_until": None}))
            for hid, (grid, community, n) in touched.items():
                events.append(_event("household.changed", hid, community, grid, now,
                                     {"change": "imported", "members_added": n, "head": heads.get(hid)}))
            new_ids = {h["id"] for h in new_households}
            for h in new_households:
                h["head_person_id"] = heads.get(h["id"])
            if new_households:
                await s.execute(Household.__table__.insert(), new_households)
            if persons:
                await s.execute(Person.__table__.insert(), persons)
            for hid, pid in heads.items():
                if hid not in new_ids:
                    await s.execute(update(Household).where(Household.id == hid, Household.head_person_id.is_(None))
                                    .values(head_person_id=pid, version=Household.version + 1, updated_at=now))
            if tags:
                await s.execute(PersonTag.__table__.insert(), tags)
            if events:
                await s.execute(OutboxEvent.__table__.insert(), events)
            # svc_services' electorate: the imported persons (households, buildings and heads as written above)
            await elector_feed.sync_electors(s, [p["id"] for p in persons], now=now)
            counts = (len(persons), skipped, len(new_households))
            if dry_run:
                raise _Undo
    except _Undo:
        for h in new_households:  # forget the households this dry run pretended to create
            households.pop((h["grid_code"], h["address"]), None)
    return counts


def _event(type_: str, subject: str, community: str, grid: str, now, data: dict) -> dict:
    return dict(event_id=new_id(), type=type_, occurred_at=now, community=community, grid=grid, subject=subject,
                data=data, created_at=now, next_attempt_at=now, attempts=0, delivered_at=None, last_error=None)


def write_report(path: Path, errors: list[RowError]) -> Path:
    """`<file>.errors.csv` beside the file (UTF-8 with BOM so Excel shows Chinese); removed when clean."""
    report = path.with_name(path.name + ".errors.csv")
    if not errors:
        report.unlink(missing_ok=True)
        return report
    with report.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(["行号", "列", "原因"])
        for e in sorted(errors, key=lambda e: e.row):
            w.writerow([e.row, e.column, e.reason])
    return report
