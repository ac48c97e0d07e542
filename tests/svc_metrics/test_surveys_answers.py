"""Property: any answers either pass the questionnaire (and come back normalised, skip logic honoured) or are
refused as one 422 naming each field at fault under `answers.` — never anything else (issue 29, bad input)."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from common.errors import Problem
from svc_metrics.surveys.questionnaire import Questionnaire, check_answers
from tests.svc_metrics.test_surveys import questionnaire

QN = Questionnaire.model_validate(questionnaire())
KEYS = [q.key for q in QN.questions()]
VALUES = st.one_of(st.none(), st.integers(-2, 8), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                   st.sampled_from(["yes", "no", "maybe", "", "canteen"]),
                   st.lists(st.sampled_from(["canteen", "clinic", "health", "legal", "spaceflight", 3]), max_size=4),
                   st.text(max_size=30))
ANSWERS = st.dictionaries(st.sampled_from([*KEYS, "ghost"]), VALUES, max_size=8)


@settings(max_examples=120, deadline=None)
@given(ANSWERS)
def test_answers_pass_normalised_or_fail_naming_the_fields(answers):
    try:
        out = check_answers(QN, answers)
    except Problem as p:
        assert p.status == 422
        fields = [e["field"] for e in p.errors]
        assert fields and all(f.startswith("answers.") for f in fields)
        assert all(f.removeprefix("answers.") in answers or f.removeprefix("answers.") in KEYS for f in fields)
        return
    assert isinstance(out["overall"], int) and 1 <= out["overall"] <= 5
    assert out["used"] in ("yes", "no")
    if out["used"] != "yes":
        assert "which" not in out            # hidden by the skip logic, so never kept
    else:
        assert set(out["which"]) <= {"canteen", "clinic"} and out["which"]
    assert set(out.get("needs", [])) <= {"elderly_care", "health", "legal"}
    assert set(out) <= set(KEYS)
