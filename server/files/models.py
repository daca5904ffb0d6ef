"""Stored files: one metadata row per upload, content stored once by SHA-256.

Content lives under ``<data_dir>/files/<sha[:2]>/<sha>``; two uploads of the same bytes
share it. Each upload still gets its own ``files`` row (its own id, name and uploader), so
who may read a file is decided per upload: uploading bytes someone else already uploaded
gives you a new id and no access to theirs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime

# Longest original filename kept (longer names are cut, keeping the extension).
MAX_NAME_CHARS = 255
# Longest title kept from a PDF's metadata.
MAX_TITLE_CHARS = 500


class StoredFile(Base):
    __tablename__ = "files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(127))
    # The filename the uploader gave, for display and Content-Disposition.
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    # Page count of a PDF; None for every other type.
    pages: Mapped[int | None] = mapped_column(Integer, default=None)
    title: Mapped[str] = mapped_column(String(MAX_TITLE_CHARS), default="")
    # Extracted text (PDFs and plain text), for search. Deferred: a 200-page report's text
    # is hundreds of KB, and a page fetch (95 tablets at once) needs only the row's head;
    # whoever reads it asks for it (``undefer`` or a column select).
    text: Mapped[str] = mapped_column(Text, default="", deferred=True)
    # True from the upload of a PDF until its text has been read (after the upload was
    # answered, by a text worker); a restart picks up the files still pending.
    text_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    uploader_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
