"""Bulk import of paper ledgers: checks per row, error report, all-or-nothing batches, idempotent re-runs."""
from __future__ import annotations

import csv

from sqlalchemy import func, select

from tests.svc_residents.conftest import GRID_A1, GRID_B1, H, make_id

P_HOUSEHOLD = H("1")  # an existing household in grid A1 (staff1's community)

HEADER = ["姓名", "身份证号", "手机号", "网格编码", "楼栋编码", "地址", "户籍类型", "与户主关系", "特殊群体"]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8-sig") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)
    return path


def good_rows():
    return [
        ["赵一", make_id("19400101", 1), "13811110001", GRID_A1, GRID_A1 + "001", "幸福路9号楼901", "户籍", "户主",
         "老年人、独居老人"],
        ["赵二", make_id("19700101", 2, sex="F"), "", GRID_A1, GRID_A1 + "001", "幸福路9号楼901", "常住", "子女", ""],
        ["钱三", make_id("19850505", 3), "13811110003", GRID_B1, "", "安康路9号", "流动人口", "本人", "dual_earner"],
    ]


async def _counts(client):
    from svc_residents.models import Household, OutboxEvent, Person, PersonTag

    async with client.app.state.db.session() as s:
        return [(await s.execute(select(func.count()).select_from(m))).scalar()
                for m in (Household, Person, PersonTag, OutboxEvent)]


async def test_import_then_reimport(seeded, as_, tmp_path):
    from svc_residents.importer import import_file

    db, keys = seeded.app.state.db, seeded.app.state.protection
    before = await _counts(seeded)
    path = write_csv(tmp_path / "台账.csv", good_rows())
    r = await import_file(db, keys, path, dry_run=True)
    assert (r.imported, r.households_created, r.errors) == (3, 2, [])
    assert await _counts(seeded) == before
    r = await import_file(db, keys, path)
    assert (r.rows, r.imported, r.households_created, r.skipped_existing) == (3, 3, 2, 0)
    assert not r.report.exists()
    after = await _counts(seeded)
    assert after[:3] == [before[0] + 2, before[1] + 3, before[2] + 3]
    # the imported people are ordinary records: searchable by ID number, masked, tagged, head set
    res = await seeded.post("/residents/v1/persons/search", json={"id_number": good_rows()[0][1]},
                            headers=as_("staff1"))
    (p,) = res.json()["items"]
    assert p["name"] == "赵一" and p["phone"] == "138****0001" and p["birth_date"] == "1940-01-01"
    assert {t["code"] for t in p["tags"]} == {"elderly", "living_alone"}
    hh = (await seeded.get(f"/residents/v1/households/{p['household_id']}", headers=as_("staff1"))).json()
    assert hh["head_person_id"] == p["id"] and len(hh["members"]) == 2
    r = await seeded.get(f"/residents/v1/persons/{p['id']}", params={"reveal": "true", "purpose": "核对台账"},
                         headers=as_("staff1"))
    assert r.json()["id_number"] == good_rows()[0][1]
    # re-running the same file changes nothing
    r = await import_file(db, keys, path)
    assert (r.imported, r.skipped_existing, r.households_created) == (0, 3, 0)
    assert await _counts(seeded) == after


async def test_bad_rows_reject_their_batch_and_are_reported(seeded, tmp_path):
    from svc_residents.importer import import_file

    db, keys = seeded.app.state.db, seeded.app.state.protection
    rows = good_rows()
    bad_check = rows[1][1][:17] + ("1" if rows[1][1][17] != "1" else "2")
    bad = [
        ["孙四", bad_check, "", GRID_A1, "", "幸福路10号", "户籍", "", ""],                      # row 5
        ["", make_id("19900101", 5), "138", "110105001001999", "", "幸福路11号", "外籍", "", "富人"],  # row 6
        ["周五", rows[0][1], "", GRID_A1, "", "幸福路12号", "户籍", "", ""],                       # row 7 dup of row 2
        ["吴六", make_id("20990101", 6), "", GRID_A1, GRID_B1 + "001", "幸福路13号", "常住", "", ""],  # row 8
    ]
    before = await _counts(seeded)
    path = write_csv(tmp_path / "ledger.csv", rows + bad)
    r = await import_file(db, keys, path, batch_size=3)  # batch 1 = rows 2-4 (clean), batch 2 = rows 5-7, 3 = row 8
    assert r.imported == 3 and r.rejected_batches == 2 and r.not_written == 0
    assert (await _counts(seeded))[1] == before[1] + 3
    with r.report.open(encoding="utf-8-sig") as fh:
        report = list(csv.reader(fh))
    assert report[0] == ["行号", "列", "原因"]
    got = {(int(a), b) for a, b, _ in report[1:]}
    assert got == {(5, "身份证号"), (6, "姓名"), (6, "手机号"), (6, "网格编码"), (6, "户籍类型"), (6, "特殊群体"),
                   (7, "身份证号"), (8, "身份证号"), (8, "楼栋编码")}
    reasons = " ".join(c for _, _, c in report[1:])
    assert "校验" in reasons and "重复" in reasons and "富人" in reasons and "出生日期" in reasons
    # all-or-nothing: a clean row beside a bad one in the same batch is not written
    path2 = write_csv(tmp_path / "mixed.csv", [["郑七", make_id("19620202", 7), "", GRID_A1, "", "幸福路14号",
                                                 "户籍", "", ""], bad[0]])
    r = await import_file(db, keys, path2)
    assert r.imported == 0 and r.not_written == 1 and r.rejected_batches == 1


async def test_xlsx_ledger(seeded, tmp_path):
    from openpyxl import Workbook

    from svc_residents.importer import import_file

    wb = Workbook()
    ws = wb.active
    ws.append(["name", "id_number", "phone", "grid_code", "address", "residency_type", "tags"])
    ws.append(["冯八", make_id("19550303", 8), 13811110008, int(GRID_A1), "幸福路15号", "registered", "elderly"])
    path = tmp_path / "ledger.xlsx"
    wb.save(path)
    r = await import_file(seeded.app.state.db, seeded.app.state.protection, path)
    assert r.imported == 1 and r.errors == []


def test_cli_reports_errors(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from deploy.cli import app, register_service_commands

    monkeypatch.setenv("ONENET_SVC_RESIDENTS_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("ONENET_FIELD_KEYS_FILE", str(tmp_path / "fields.json"))
    register_service_commands()
    path = write_csv(tmp_path / "x.csv", good_rows()[:1])
    result = CliRunner().invoke(app, ["residents", "import", str(path), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "错误 2 处" in result.output and (tmp_path / "x.csv.errors.csv").exists()  # no places in an empty db
    bad = tmp_path / "y.txt"
    bad.write_text("x")
    assert CliRunner().invoke(app, ["residents", "import", str(bad)]).exit_code == 2


def _stale_existence_check(monkeypatch, stale_calls: int):
    """The importer's existence check misses a person registered a moment ago (another writer won the race)
    for its first `stale_calls` calls: the insert then meets the unique blind index."""
    from svc_residents import importer

    real = importer._existing
    calls = []

    async def stale(s, keys):
        calls.append(len(keys))
        return set() if len(calls) <= stale_calls else await real(s, keys)

    monkeypatch.setattr(importer, "_existing", stale)
    return calls


async def test_unique_race_is_retried_as_already_registered(seeded, as_, tmp_path, monkeypatch):
    from svc_residents.importer import import_file

    rows = good_rows()
    before = await _counts(seeded)
    r = await seeded.post("/residents/v1/persons", headers=as_("staff1"), json={
        "household_id": P_HOUSEHOLD, "name": "赵二", "id_number": rows[1][1], "residency_type": "resident"})
    assert r.status_code == 201, r.text
    _stale_existence_check(monkeypatch, 1)
    res = await import_file(seeded.app.state.db, seeded.app.state.protection, write_csv(tmp_path / "r.csv", rows))
    assert (res.imported, res.skipped_existing, res.errors, res.rejected_batches) == (2, 1, [], 0)
    households, persons, *_ = await _counts(seeded)
    assert (households, persons) == (before[0] + 2, before[1] + 3)  # no household left over from the failed try


async def test_unique_race_that_persists_is_a_row_error_and_a_clean_rollback(seeded, as_, tmp_path, monkeypatch):
    from svc_residents.importer import import_file

    rows = good_rows()
    r = await seeded.post("/residents/v1/persons", headers=as_("staff1"), json={
        "household_id": P_HOUSEHOLD, "name": "赵二", "id_number": rows[1][1], "residency_type": "resident"})
    assert r.status_code == 201, r.text
    before = await _counts(seeded)
    _stale_existence_check(monkeypatch, 2)  # both tries of the first batch meet the conflict
    path = write_csv(tmp_path / "r.csv", rows)
    res = await import_file(seeded.app.state.db, seeded.app.state.protection, path, batch_size=2)
    assert [(e.row, e.column) for e in res.errors] == [(3, "身份证号")]
    assert "并发" in res.errors[0].reason
    assert (res.rejected_batches, res.not_written, res.imported) == (1, 1, 1)  # row 2 not written; row 4 imported
    after = await _counts(seeded)
    assert (after[0], after[1]) == (before[0] + 1, before[1] + 1)  # only the second batch's household and person
    report = (tmp_path / "r.csv.errors.csv").read_text(encoding="utf-8-sig")
    assert "3,身份证号," in report
    # and a re-run imports the rest, the raced person counted as already registered
    monkeypatch.undo()
    res = await import_file(seeded.app.state.db, seeded.app.state.protection, path, batch_size=2)
    assert (res.imported, res.skipped_existing, res.errors) == (1, 2, [])
