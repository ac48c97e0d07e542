from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from common.db import UTCDateTime
from svc_services.base import Base


class Attachment(Base):
    """One stored file of a request: a photo (the resident's, or a worker's on a later step) or the file of a
    required material. The object store holds the bytes under `id` (and `id-thumb`), never the client's name.
    Materials are encrypted (`wrapped_key`: the object's data key wrapped by the field keys). `purged_at`: the
    retention job deleted the objects; the row stays as the record that a file existed."""

    __tablename__ = "attachments"
    __table_args__ = (Index("ix_attachments_request", "request_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_requests.id"))
    kind: Mapped[str] = mapped_column(String(16))                        # photo / material
    material_id: Mapped[str | None] = mapped_column(ForeignKey("request_materials.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))                       # the request's state at upload
    note: Mapped[str | None] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column()                                  # bytes as served (before encryption)
    stored_size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(String(64))                      # of the stored object
    thumb_sha256: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column()
    height: Mapped[int | None] = mapped_column()
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    wrapped_key: Mapped[str | None] = mapped_column(String(200))
    store: Mapped[str] = mapped_column(String(16))                       # local / s3
    uploaded_by: Mapped[str] = mapped_column(String(160))
    uploaded_role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
