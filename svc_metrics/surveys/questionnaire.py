"""Questionnaires (问卷): sections of questions, skip logic, and the check of one response's answers against them.

Kinds: single (one option), multiple (options), likert (1–5, labelled in Chinese), number (within min/max), text
(free text, never aggregated), needs ("which of these services do you need": options are the 双清单 categories of
common/vocab.py). `show_if` shows a question only when an earlier question's answer is one of `any_of` (for a
multiple or needs question: includes one of them; for likert or number: equals one of them)."""
from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import Problem, field_error
from common.vocab import CATEGORIES, CATEGORY_CODES

Key = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
LIKERT_ZH = ["非常不满意", "不满意", "一般", "满意", "非常满意"]
LIKERT_EN = ["Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"]
# Likert 4–5 count as satisfied (the same line as ratings of requests, plan 004's five-point scale).
SATISFIED_FROM = 4
CHOICE_KINDS = ("single", "multiple", "needs")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Option(_In):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9_]{0,47}$")
    label: str = Field(min_length=1, max_length=200)


class ShowIf(_In):
    question: str = Key
    any_of: list[str] = Field(min_length=1, max_length=20, description="选项键；李克特或数字题为取值（字符串）")


class Question(_In):
    key: str = Key
    kind: Literal["single", "multiple", "likert", "number", "text", "needs"]
    title: str = Field(min_length=1, max_length=300)
    required: bool = True
    options: list[Option] = Field(default_factory=list, max_length=30)
    categories: list[str] | None = Field(default=None, max_length=30,
                                         description="needs 题：可选服务类别（默认全部 双清单 类别）")
    labels: list[str] | None = Field(default=None, min_length=5, max_length=5, description="李克特 1–5 的中文标签")
    min: float | None = None
    max: float | None = None
    max_length: int = Field(default=500, ge=1, le=2000)
    show_if: ShowIf | None = None
    kpi: bool = Field(default=False, description="李克特题：计入满意度指标（问卷来源）")

    @model_validator(mode="after")
    def _shape(self) -> "Question":
        if self.kind in ("single", "multiple"):
            if len(self.options) < 2:
                raise ValueError("单选/多选题至少两个选项 a choice question needs two options or more")
            if len({o.key for o in self.options}) != len(self.options):
                raise ValueError("选项键重复 option keys repeat")
        elif self.options:
            raise ValueError("只有单选/多选题有 options only choice questions have options")
        if self.kind == "needs":
            unknown = sorted(set(self.categories or []) - CATEGORY_CODES)
            if unknown:
                raise ValueError(f"未知服务类别 unknown categories: {', '.join(unknown)}")
        elif self.categories is not None:
            raise ValueError("只有 needs 题有 categories")
        if self.kind == "likert" and self.labels is None:
            self.labels = list(LIKERT_ZH)
        if self.kind != "likert" and (self.labels is not None or self.kpi):
            raise ValueError("labels / kpi 只用于李克特题 labels and kpi are for likert questions")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min 大于 max")
        return self

    def option_keys(self) -> list[str]:
        if self.kind == "needs":
            return self.categories or [c for c, _, _ in CATEGORIES]
        if self.kind == "likert":
            return ["1", "2", "3", "4", "5"]
        return [o.key for o in self.options]


class Section(_In):
    key: str = Key
    title: str = Field(min_length=1, max_length=200)
    questions: list[Question] = Field(min_length=1, max_length=60)


class Questionnaire(_In):
    sections: list[Section] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _references(self) -> "Questionnaire":
        seen: dict[str, Question] = {}
        for q in self.questions():
            if q.key in seen:
                raise ValueError(f"题目键重复 question key repeats: {q.key}")
            if q.show_if is not None:
                ref = seen.get(q.show_if.question)
                if ref is None:
                    raise ValueError(f"{q.key}: show_if 须引用前面的题目 must refer to an earlier question")
                if ref.kind == "text":
                    raise ValueError(f"{q.key}: show_if 不能引用填空题 cannot refer to a free-text question")
                if ref.kind != "number" and set(q.show_if.any_of) - set(ref.option_keys()):
                    raise ValueError(f"{q.key}: show_if 的取值不在 {ref.key} 的选项中")
            seen[q.key] = q
        return self

    def questions(self) -> list[Question]:
        return [q for s in self.sections for q in s.questions]


def _matches(cond: ShowIf, value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return bool(set(value) & set(cond.any_of))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) in cond.any_of


def check_answers(qn: Questionnaire, answers: dict[str, Any]) -> dict[str, Any]:
    """The answers, normalised (likert as int, number as float, choices de-duplicated in option order), or a 422
    naming every field at fault: a question the skip logic hid (survey.hidden_question), an unknown question, a
    required visible one left out, a value outside its kind's range (a Likert 6 is survey.likert_range)."""
    errors: list[dict[str, Any]] = []
    known = {q.key: q for q in qn.questions()}

    def bad(key: str, code: str, zh: str, en: str) -> None:
        errors.append(field_error(f"answers.{key}", code, zh, en, "body"))

    for key in answers:
        if key not in known:
            bad(key, "survey.unknown_question", "问卷中没有这道题", "No such question in the questionnaire")
    out: dict[str, Any] = {}
    for q in qn.questions():
        visible = q.show_if is None or _matches(q.show_if, out.get(q.show_if.question))
        value = answers.get(q.key)
        if not visible:
            if value is not None:
                bad(q.key, "survey.hidden_question", f"按前面的回答，本题（{q.title}）不应作答",
                    "The skip logic hides this question for the answers given before it")
            continue
        if value is None or value == [] or value == "":
            if q.required:
                bad(q.key, "survey.answer_required", f"请回答：{q.title}", "This question needs an answer")
            continue
        norm = _normalise(q, value)
        if isinstance(norm, tuple):
            bad(q.key, *norm)
        else:
            out[q.key] = norm
    if errors:
        raise Problem(422, "validation_failed", ("答卷有误，未保存", "The answers have errors; nothing was kept"),
                      errors=errors)
    return out


def _normalise(q: Question, value: Any) -> Any:
    """The value, or (code, zh, en) of what is wrong with it."""
    if q.kind == "likert":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
            return ("survey.likert_range", "满意度只能是 1–5 的整数（" + "、".join(
                f"{i + 1} {label}" for i, label in enumerate(q.labels or LIKERT_ZH)) + "）",
                "A Likert answer is a whole number from 1 to 5")
        return value
    if q.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return ("survey.number_expected", "请填写数字", "A number is expected")
        if (q.min is not None and value < q.min) or (q.max is not None and value > q.max):
            return ("survey.number_range", f"取值须在 {q.min if q.min is not None else '-∞'}–"
                    f"{q.max if q.max is not None else '∞'} 之间", "The number is out of range")
        return float(value)
    if q.kind == "text":
        if not isinstance(value, str) or len(value) > q.max_length:
            return ("survey.text_expected", f"请填写不超过 {q.max_length} 字的文字", "Text within the length limit")
        return value.strip()
    keys = q.option_keys()
    if q.kind == "single":
        if not isinstance(value, str) or value not in keys:
            return ("survey.unknown_option", "请选择一个给定的选项", "Pick one of the given options")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or set(value) - set(keys):
        return ("survey.unknown_option", "请从给定的选项中选择" if q.kind == "multiple" else "请从给定的服务类别中选择",
                "Pick among the given options")
    return [k for k in keys if k in value]
