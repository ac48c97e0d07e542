"""Message templates as data: plain, short Chinese with the request's number and the next step; English for
those who asked for it. `{name}` placeholders only; `render` refuses a missing or an unknown variable with a
problem naming it, so a rule or a caller that drifts from its template is caught, never sent half-filled."""
from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any

from common.errors import invalid


@dataclass(frozen=True)
class Template:
    category: str  # what a recipient opts out of (PIPL): request, offer, verification, warning, broadcast, booking,
    # survey, safety
    zh: tuple[str, str]  # (title, body)
    en: tuple[str, str]

    @property
    def variables(self) -> frozenset[str]:
        names = set()
        for text in (*self.zh, *self.en):
            names.update(f for _, f, _, _ in Formatter().parse(text) if f)
        return frozenset(names)


T = Template
TEMPLATES: dict[str, Template] = {
    "request.accepted": T("request", ("诉求已受理", "您的诉求（编号{number}，{item}）已受理，我们会尽快安排人员处理。"),
                          ("Request accepted", "Your request {number} ({item}) was accepted; we will assign someone soon.")),
    "request.rejected": T("request", ("诉求未受理", "您的诉求（编号{number}）未受理，原因：{reason}。如有疑问请联系社区。"),
                          ("Request not accepted", "Your request {number} was not accepted: {reason}. "
                                                   "Contact your community with any questions.")),
    "request.dispatched": T("request", ("诉求已派单", "您的诉求（编号{number}）已派给{assignee}，请保持电话畅通。"),
                            ("Request assigned", "Your request {number} was assigned to {assignee}; "
                                                 "please keep your phone on.")),
    "request.assigned": T("request", ("新派单", "诉求{number}（{item}）已派给您，请尽快接单。"),
                          ("New assignment", "Request {number} ({item}) was assigned to you; please claim it.")),
    "request.claimed": T("request", ("已有人接单", "您的诉求（编号{number}）已由{assignee}接单，正在处理。"),
                         ("Request claimed", "{assignee} took your request {number} and is working on it.")),
    "request.resolved": T("request", ("诉求已办结，请评价", "您的诉求（编号{number}）已办结。请在应用中为本次服务评价；"
                                                     "如未解决可申请重办。"),
                          ("Request resolved: please rate", "Your request {number} is resolved. Please rate the "
                                                            "service in the app, or ask to reopen it.")),
    "request.reopened": T("request", ("诉求已重办", "您的诉求（编号{number}）已重新办理，我们会再次安排处理。"),
                          ("Request reopened", "Your request {number} was reopened; it will be handled again.")),
    "request.reopened.staff": T("request", ("诉求被申请重办", "诉求{number}（{item}）被居民申请重办，请重新处理。"),
                                ("Request reopened", "Request {number} ({item}) was reopened by the resident; "
                                                     "please handle it again.")),
    "request.escalated": T("request", ("诉求已升级", "诉求{number}（{item}）已升级至{level}，请及时处理。"),
                           ("Request escalated", "Request {number} ({item}) was escalated to {level}; "
                                                 "please handle it.")),
    "request.overdue": T("request", ("诉求超时", "诉求{number}（{item}）已超过时限（{breaches}），请尽快处理。"),
                         ("Request overdue", "Request {number} ({item}) is past its deadline ({breaches}); "
                                             "please act now.")),
    "offer.made": T("offer", ("新的服务邀约", "有一项服务需求（{item}）邀请您提供服务，请在{expires}前确认。"),
                    ("New offer", "You are asked to provide a service ({item}); please answer before {expires}.")),
    "offer.expiring": T("offer", ("邀约即将过期", "服务邀约（{item}）将于{expires}过期，请尽快确认。"),
                        ("Offer about to expire", "The offer ({item}) expires at {expires}; please answer soon.")),
    "verification.needs_resident": T("verification", ("信息需要您确认", "您的{field}信息需要本人确认，请携带证件到社区"
                                                                 "或在应用中补充。"),
                                     ("Please confirm your details", "Your {field} needs your confirmation: visit "
                                                                     "your community with ID or add it in the app.")),
    "warning.opened": T("warning", ("预警提示", "{community}出现预警：{title}，请及时查看处理。"),
                        ("Warning", "A warning was raised for {community}: {title}. Please look into it.")),
    "booking.confirmed": T("booking", ("预约成功", "您已预约{item}，时间{when}。请按时到场；不能前往请提前在应用中取消。"),
                           ("Booking confirmed", "You booked {item} for {when}. Please come on time, or cancel "
                                                 "in the app beforehand if you cannot.")),
    "booking.approved": T("booking", ("预约已批准", "您预约的{item}（{when}）已获批准，请按时到场。"),
                          ("Booking approved", "Your booking of {item} ({when}) was approved; please come on time.")),
    "booking.rejected": T("booking", ("预约未获批准", "您预约的{item}（{when}）未获批准，原因：{reason}。可在应用中另选时段。"),
                          ("Booking not approved", "Your booking of {item} ({when}) was not approved: {reason}. "
                                                   "You may pick another slot in the app.")),
    "booking.promoted": T("booking", ("候补成功", "您候补的{item}（{when}）有空位了，预约已确认，请按时到场；不能前往请及时取消。"),
                          ("Off the waitlist", "A place freed for {item} ({when}): your booking is confirmed. "
                                               "Please come on time, or cancel if you cannot.")),
    "booking.promoted_pending": T("booking", ("候补转为待审批", "您候补的{item}（{when}）有空位了，正等待工作人员审批，"
                                                        "结果会另行通知。"),
                                  ("Off the waitlist", "A place freed for {item} ({when}); staff will approve it "
                                                       "and we will tell you.")),
    "booking.rescheduled": T("booking", ("预约已改期", "工作人员已将您预约的{item}改到{when}。时间不便可在应用中改约或取消。"),
                             ("Booking moved", "Staff moved your booking of {item} to {when}. Reschedule or cancel "
                                               "in the app if it does not suit you.")),
    "booking.cancelled": T("booking", ("预约已取消", "您预约的{item}（{when}）已被工作人员取消，原因：{reason}。"
                                                 "可在应用中重新预约。"),
                           ("Booking cancelled", "Staff cancelled your booking of {item} ({when}): {reason}. "
                                                 "You may book again in the app.")),
    "booking.reminder": T("booking", ("预约提醒", "提醒：您预约的{item}将于{when}开始，请按时到场；不能前往请提前取消。"),
                          ("Booking reminder", "Reminder: your booking of {item} starts at {when}. Please come on "
                                               "time, or cancel beforehand if you cannot.")),
    "signup.confirmed": T("booking", ("报名成功", "您已报名活动“{item}”，时间{when}。请按时参加，到场签到。"),
                          ("Signed up", "You signed up for \"{item}\" at {when}. Please come on time and check in.")),
    "signup.promoted": T("booking", ("候补成功", "您候补的活动“{item}”（{when}）有名额了，报名成功，请按时参加。"),
                         ("Off the waitlist", "A place freed for \"{item}\" ({when}): you are signed up. "
                                              "Please come on time.")),
    "signup.reminder": T("booking", ("活动提醒", "提醒：您报名的活动“{item}”将于{when}开始，请按时参加，到场签到。"),
                         ("Activity reminder", "Reminder: \"{item}\" starts at {when}. Please come on time and "
                                               "check in.")),
    "survey.invited": T("survey", ("问卷邀请", "您受邀参加“{title}”（匿名）。请在应用“问卷”中作答，登录后应用自动领取您的一次性"
                                             "答卷凭证；也可在社区自助服务一体机登录后作答，或请网格员入户时协助填写。答卷不记录您的身份，每人一份。"),
                        ("Survey invitation", "You are invited to \"{title}\" (anonymous). Answer it under Surveys in "
                                              "the app, which fetches your one-time answer code after you sign in; or "
                                              "sign in at a community kiosk, or ask your grid worker on a visit. "
                                              "Answers never record who you are; one each.")),
    "survey.invited_named": T("survey", ("问卷邀请", "您受邀参加“{title}”。请在应用“问卷”中作答（登录后自动领取答卷凭证），"
                                                   "也可在社区自助服务一体机登录后作答，或请网格员入户时协助填写。"),
                              ("Survey invitation", "You are invited to \"{title}\". Answer it under Surveys in the "
                                                    "app (sign in and it fetches your answer code), at a community "
                                                    "kiosk after signing in, or with your grid worker on a visit.")),
    "survey.reminder": T("survey", ("问卷提醒", "“{title}”即将结束，如您尚未作答，请在应用“问卷”或社区自助服务一体机登录后作答；"
                                            "已作答请忽略。"),
                         ("Survey reminder", "\"{title}\" closes soon. If you have not answered yet, please do so "
                                             "under Surveys in the app or at a community kiosk; ignore this if "
                                             "you have.")),
    "notice.general": T("broadcast", ("{title}", "{text}"), ("{title}", "{text}")),
    "safety.alert": T("safety", ("紧急求助", "{text}"), ("Emergency", "{text}")),
}


def render(template: str, variables: dict[str, Any], language: str = "zh") -> tuple[str, str]:
    """(title, body) of `template` filled with `variables`; 422 naming the template or the variable otherwise."""
    t = TEMPLATES.get(template)
    if t is None:
        raise invalid("template", "notification.unknown_template", f"没有这个消息模板：{template}",
                      f"Unknown message template: {template}")
    unknown = sorted(set(variables) - t.variables)
    if unknown:
        raise invalid(f"variables.{unknown[0]}", "notification.unknown_variable",
                      f"模板 {template} 没有变量 {unknown[0]}", f"Template {template} has no variable {unknown[0]}")
    missing = sorted(t.variables - set(variables))
    if missing:
        raise invalid(f"variables.{missing[0]}", "notification.missing_variable",
                      f"模板 {template} 缺少变量 {missing[0]}", f"Template {template} needs variable {missing[0]}")
    title, body = t.en if language == "en" else t.zh
    values = {k: str(v) for k, v in variables.items()}
    return title.format(**values)[:100], body.format(**values)
