"""The one place the call-out hands calls to the notification engine (svc_residents/notifications)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from svc_residents.notifications.rules import number_of
from svc_residents.notifications.service import notify

DUTY_ZH = {"grid_worker": "网格员", "backup_worker": "备岗网格员", "community_duty": "社区值班", "street_duty": "街道值班"}
SOURCE_ZH = {"iot": "物联设备报警", "phone": "120/119 转报", "kiosk": "一体机一键呼叫", "app": "一键呼叫"}


async def call(session: AsyncSession, *, attempt_id: str, request_id: str, duty: str, targets: list[dict],
               channels: tuple[str, ...], now: datetime, source: str, grid: str, community: str,
               place_name: str) -> None:
    """Voice, SMS and push at once (`parallel`), as an emergency: no quiet hours, opt-out or cap. Idempotent by
    attempt and recipient, in the caller's transaction (the step and its calls commit together)."""
    text = (f"【紧急】{place_name}{SOURCE_ZH.get(source, '紧急求助')}（诉求编号{number_of(request_id)}），"
            f"请{DUTY_ZH.get(duty, '')}立即在应用中应答并赶赴现场。")
    for t in targets:
        await notify(session, recipient=f"user:{t['user_id']}", template="safety.alert", variables={"text": text},
                     event_key=f"callout:{attempt_id}", now=now, urgency="emergency", subject=request_id,
                     channels=list(channels), parallel=True, community=community, grid=grid)
