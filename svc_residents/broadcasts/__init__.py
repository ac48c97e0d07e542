"""Broadcasts (通知公告: 停水通知 …): staff send a notice to the residents of a grid, building or community, or to
a special group there (独居老人, 残疾人 …), within their own scope.

- Who: grid workers (their grid), community and street staff (their community / street); a place outside the
  sender's scope is a 403 problem and nothing is written. Ops administer the platform and do not speak to
  residents; departments, member systems, providers, residents do not send broadcasts.
- How: the broadcast is stored (queued) in the request; a scheduler claims it (`FOR UPDATE SKIP LOCKED`) and hands
  it to the notification engine in chunks of persons (`notify`, template notice.general, category broadcast: the
  recipient's opt-out and quiet hours hold), remembering the last person handed over, so a crash resumes and two
  replicas send it once (notify is also idempotent by broadcast and recipient).
- Report: per channel, how many were sent, delivered, failed or skipped, and how many read it in the inbox.
"""
