"""Signed documents: the official record of minutes, vote results and instructions.

A document is signed in steps (the minutes: secretary, then chair, then the
organisation). Each step adds a signature by an incremental update, so the bytes after a
step start with the bytes before it; ``sha256`` names the latest bytes in the content
store. Once ``next_step`` is None the document is complete and never changes again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.db import Base, UTCDateTime


class SignedDocument(Base):
    __tablename__ = "signed_documents"
    __table_args__ = (UniqueConstraint("kind", "subject"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "minutes", "poll_result" or "directive".
    kind: Mapped[str] = mapped_column(String(32))
    # What it is the record of, as audit subjects name it ("meeting:7", "poll:3").
    subject: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    # The step whose signature comes next; None once complete.
    next_step: Mapped[str | None] = mapped_column(String(16), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DocumentSignature(Base):
    __tablename__ = "document_signatures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    document_id: Mapped[int] = mapped_column(
        ForeignKey("signed_documents.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[str] = mapped_column(String(16))
    # The person who signed; None for the organisation's seal.
    signer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), default=None
    )
    signer_name: Mapped[str] = mapped_column(String(300))
    certificate_sha256: Mapped[str] = mapped_column(String(64))
    field_name: Mapped[str] = mapped_column(String(64))
    # The document's bytes after this signature.
    sha256: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FileSignatures(Base):
    """What the signatures of an uploaded PDF said when it was checked at upload."""

    __tablename__ = "file_signatures"

    file_id: Mapped[int] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    signatures: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())
