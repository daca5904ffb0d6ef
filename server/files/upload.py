"""Receiving ``multipart/form-data`` uploads as a stream, straight to a temporary file.

The body is parsed as it arrives (python-multipart's push parser): the bytes of the
``file`` field go to a temporary file under the data dir while their SHA-256 is computed,
and the upload is refused with 413 as soon as it passes the limit, so an oversized body
never sits in memory or on disk. A declared ``Content-Length`` over the limit is refused
before a byte is read. Every failure removes the temporary file.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from server.errors import BadRequest, PayloadTooLarge, Unprocessable
from server.files.models import MAX_NAME_CHARS
from server.files.storage import ContentStore, discard
from server.private_paths import open_private

FILE_FIELD = "file"
# Room for the multipart framing and small extra fields around the file itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Bytes of the start of the file kept in memory, to recognise its type.
HEAD_BYTES = 4096
# Parts in one upload at most (the file plus a few fields a form may add).
MAX_PARTS = 16
# Control characters, path separators, and the bidirectional controls (embeddings,
# overrides, isolates, marks) that make "hồ-sơ\u202efdp.exe" read as "hồ-sơexe.pdf".
_UNSAFE_NAME = re.compile("[\x00-\x1f\x7f/\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass
class ReceivedFile:
    temp: Path
    size: int
    sha256: str
    head: bytes
    filename: str
    declared_type: str


def clean_filename(raw: str) -> str:
    """The last path component, NFC, no control characters, at most 255 characters."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("", name).strip().strip(".") or "file"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name


@dataclass
class _Part:
    headers: dict[str, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    content_type: str = ""


class _Sink:
    """Collects the parser's callbacks; file bytes are written by ``flush`` in a thread."""

    def __init__(self, store: ContentStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self.parts = 0
        self.part: _Part | None = None
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.in_file = False
        self.file_seen = False
        self.file_done = False
        self.file_part: _Part | None = None
        self.pending: list[bytes] = []
        self.size = 0
        self.head = bytearray()
        self.digest = hashlib.sha256()
        self.temp: Path | None = None
        self.handle: IO[bytes] | None = None
        self.error: Exception | None = None

    # python-multipart callbacks (run on the event loop, cheap) -------------------------
    def on_part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            self.error = BadRequest(f"At most {MAX_PARTS} form fields.", code="invalid_multipart")
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        assert self.part is not None
        self.part.headers[bytes(self.header_field).decode("latin-1").lower()] = bytes(
            self.header_value
        )
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        assert self.part is not None
        disposition, options = parse_options_header(
            self.part.headers.get("content-disposition", b"")
        )
        if disposition != b"form-data":
            self.error = self.error or BadRequest(
                "Each part needs Content-Disposition: form-data.", code="invalid_multipart"
            )
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self.part.filename = options[b"filename"].decode("utf-8", "replace")
        self.part.content_type = (
            self.part.headers.get("content-type", b"").decode("latin-1").strip()
        )
        if self.part.name == FILE_FIELD:
            if self.file_seen:
                self.error = self.error or BadRequest(
                    "Send one file per upload.", code="invalid_multipart"
                )
            self.file_seen = True
            self.in_file = True
            self.file_part = self.part

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.in_file or self.error is not None:
            return  # other fields are ignored (and bounded by the body limit)
        chunk = data[start:end]
        self.size += len(chunk)
        if self.size > self.limit:
            self.error = PayloadTooLarge(f"The file is over {self.limit} bytes.", code="too_large")
            return
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self.pending.append(chunk)

    def on_part_end(self) -> None:
        if self.in_file:
            self.file_done = True
        self.in_file = False
        self.part = None

    # off the event loop -----------------------------------------------------------------
    def flush(self) -> None:
        """Write and hash what the parser produced since the last flush (blocking)."""
        if not self.pending:
            return
        if self.handle is None:
            self.temp = self.store.temp_path(".upload")
            self.handle = os.fdopen(open_private(self.temp), "wb")
        for chunk in self.pending:
            self.digest.update(chunk)
            self.handle.write(chunk)
        self.pending.clear()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def abandon(self) -> None:
        self.close()
        if self.temp is not None:
            discard(self.temp)
            self.temp = None


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(
        request.headers.get("content-type", "").encode("latin-1")
    )
    if content_type != b"multipart/form-data":
        raise BadRequest(
            "Send the file as multipart/form-data in the field 'file'.", code="invalid_multipart"
        )
    boundary = options.get(b"boundary", b"")
    if not boundary or len(boundary) > 200:
        raise BadRequest("The multipart boundary is missing.", code="invalid_multipart")
    return boundary


async def receive_file(request: Request, store: ContentStore, limit: int) -> ReceivedFile:
    """Stream the ``file`` field of a multipart body to a temporary file.

    400 ``invalid_multipart`` for a malformed body, 400 ``missing_file`` without the field,
    422 ``empty_file`` for an empty one, 413 ``too_large`` past ``limit``. On any failure
    the temporary file is gone.
    """
    boundary = _boundary(request)
    body_limit = limit + MULTIPART_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > body_limit:
        raise PayloadTooLarge(f"The file is over {limit} bytes.", code="too_large")
    sink = _Sink(store, limit)
    parser = MultipartParser(
        boundary,
        {  # type: ignore[arg-type]
            "on_part_begin": sink.on_part_begin,
            "on_header_field": sink.on_header_field,
            "on_header_value": sink.on_header_value,
            "on_header_end": sink.on_header_end,
            "on_headers_finished": sink.on_headers_finished,
            "on_part_data": sink.on_part_data,
            "on_part_end": sink.on_part_end,
        },
    )
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > body_limit:
                raise PayloadTooLarge(f"The file is over {limit} bytes.", code="too_large")
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise BadRequest(
                    f"The multipart body is malformed: {exc}.", code="invalid_multipart"
                ) from exc
            if sink.error is not None:
                raise sink.error
            if sink.pending:
                await asyncio.to_thread(sink.flush)
        try:
            parser.finalize()
        except MultipartParseError as exc:
            raise BadRequest(
                f"The multipart body is malformed: {exc}.", code="invalid_multipart"
            ) from exc
        if sink.error is not None:
            raise sink.error
        if not sink.file_seen or sink.file_part is None:
            raise BadRequest("The form has no 'file' field.", code="missing_file")
        if not sink.file_done:
            raise BadRequest("The multipart body ends inside the file.", code="invalid_multipart")
        if sink.size == 0:
            raise Unprocessable("The file is empty.", code="empty_file")
        await asyncio.to_thread(sink.flush)
        sink.close()
        assert sink.temp is not None
        part = sink.file_part
        return ReceivedFile(
            temp=sink.temp,
            size=sink.size,
            sha256=sink.digest.hexdigest(),
            head=bytes(sink.head),
            filename=clean_filename(part.filename or ""),
            declared_type=part.content_type,
        )
    except BaseException:
        sink.abandon()  # a close and an unlink: quick, and safe while being cancelled
        raise
