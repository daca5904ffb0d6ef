"""Annotations on document pages: ink strokes, highlights and text notes.

Private by default; a shared annotation is visible to the participants of the meeting it is
shared with (a meeting whose agenda carries the document). Coordinates are fractions of the
page (0..1) with the origin at the top left, as a tablet sees the page, so they do not
depend on the width a page was rendered at. ``annotated_pdf`` writes a reader's annotations
into their stamped copy of the document as real PDF annotations (``/Ink``, ``/Highlight``,
``/Text``), in the files feature's worker processes (with their memory and time limits),
never in the server process.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pypdf import PdfReader, PdfWriter
from pypdf.annotations import Highlight, Text
from pypdf.generic import (
    ArrayObject,
    DictionaryObject,
    FloatObject,
    NameObject,
    NumberObject,
    TextStringObject,
)
from sqlalchemy import or_, select

from meeting.events import emit_annotation_removed, emit_annotation_shared
from meeting.models import AgendaDocument, Annotation, AnnotationKind, Participant
from meeting.participants import meeting_subject
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from server.files import stamping
from server.files.models import StoredFile
from server.files.runtime import runtime
from server.files.service import readable_file, stamped_copy
from server.files.storage import discard
from server.files.worker import JobRejected, WorkerCrashed, WorkerTimeout

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
Point = tuple[Fraction, Fraction]
# Most strokes, points per stroke and rectangles one annotation may carry.
MAX_STROKES = 200
MAX_POINTS_PER_STROKE = 5_000
MAX_RECTS = 200
MAX_NOTE_CHARS = 4_000


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class InkData(_Data):
    strokes: Annotated[
        list[Annotated[list[Point], Field(min_length=1, max_length=MAX_POINTS_PER_STROKE)]],
        Field(min_length=1, max_length=MAX_STROKES),
    ]
    color: Color = "#d32f2f"
    # Line width in PDF points.
    width: Annotated[float, Field(gt=0, le=50)] = 2.0


class HighlightData(_Data):
    # [x0, y0, x1, y1] with (x0, y0) the top left corner.
    rects: Annotated[
        list[tuple[Fraction, Fraction, Fraction, Fraction]],
        Field(min_length=1, max_length=MAX_RECTS),
    ]
    color: Color = "#ffeb3b"


class NoteData(_Data):
    x: Fraction
    y: Fraction
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTE_CHARS)]
    color: Color = "#1976d2"


DATA_MODELS: dict[AnnotationKind, type[_Data]] = {
    AnnotationKind.INK: InkData,
    AnnotationKind.HIGHLIGHT: HighlightData,
    AnnotationKind.NOTE: NoteData,
}


def parse_data(kind: AnnotationKind, raw: dict[str, Any]) -> dict[str, Any]:
    """The annotation's data checked against its kind: 400 ``invalid_request`` otherwise."""
    try:
        parsed = DATA_MODELS[kind].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(
            f"Invalid {kind.value} data at {where or 'data'!r}: {first['msg']}.",
            code="invalid_request",
        ) from exc
    data: dict[str, Any] = json.loads(parsed.model_dump_json())
    return data


def annotation_json(row: Annotation) -> dict[str, Any]:
    return {
        "id": row.id,
        "file_id": row.file_id,
        "user_id": row.user_id,
        "page": row.page,
        "kind": row.kind,
        "data": row.data,
        "shared": row.shared,
        "meeting_id": row.meeting_id,
        "created_at": utc_iso(row.created_at),
        "space": row.space,
        "client_id": row.client_id,
    }


async def _meetings_sharing(ctx: Context, user_id: int, file_id: int) -> list[int]:
    """Meetings the user takes part in whose agenda carries the file, newest first."""
    async with ctx.read() as session:
        rows = await session.execute(
            select(AgendaDocument.meeting_id)
            .distinct()
            .join(Participant, Participant.meeting_id == AgendaDocument.meeting_id)
            .where(AgendaDocument.file_id == file_id, Participant.user_id == user_id)
            .order_by(AgendaDocument.meeting_id.desc())
        )
        return [int(mid) for mid in rows.scalars()]


async def add_annotation(
    ctx: Context,
    actor: Principal,
    file_id: int,
    *,
    page: int,
    kind: AnnotationKind,
    data: dict[str, Any],
    shared: bool,
    meeting_id: int | None = None,
    client_id: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Annotate a page of a document the reader may read; the annotation and whether it is new.

    With a ``client_id`` the call is idempotent: when the reader already stored an annotation
    under that id (a queue resent after a lost answer), that annotation is answered unchanged.

    404 ``file_not_found``; 422 ``not_a_document`` (not a PDF), ``page_out_of_range``,
    ``not_shared_in_meeting`` (sharing needs a meeting of the reader whose agenda carries
    the document), ``too_many_annotations``; 413 when the data is too big.
    """
    f = await readable_file(ctx, actor, file_id)
    if not f.pages:
        raise Unprocessable(f"File {file_id} is not a paged document.", code="not_a_document")
    if not 1 <= page <= f.pages:
        raise Unprocessable(
            f"File {file_id} has pages 1 to {f.pages}.",
            code="page_out_of_range",
            details={"pages": f.pages},
        )
    settings = ctx.settings
    if len(json.dumps(data)) > settings.annotation_max_data_bytes:
        raise PayloadTooLarge(
            f"An annotation's data has at most {settings.annotation_max_data_bytes} bytes.",
            code="too_large",
        )
    clean = parse_data(kind, data)
    longest = max((len(stroke) for stroke in clean.get("strokes", ())), default=0)
    if longest > settings.annotation_max_points_per_stroke:
        raise Unprocessable(
            f"A stroke has at most {settings.annotation_max_points_per_stroke} points.",
            code="stroke_too_long",
        )
    size = len(json.dumps(clean))
    target: int | None = None
    if shared or meeting_id is not None:
        candidates = await _meetings_sharing(ctx, actor.id, file_id)
        if meeting_id is not None and meeting_id not in candidates:
            raise Unprocessable(
                f"Document {file_id} is not on an agenda of meeting {meeting_id} you take part in.",
                code="not_shared_in_meeting",
            )
        if not candidates:
            raise Unprocessable(
                f"Document {file_id} is on no agenda of a meeting you take part in.",
                code="not_shared_in_meeting",
            )
        target = meeting_id if meeting_id is not None else candidates[0]
    async with ctx.write() as w:
        if client_id is not None:
            earlier = (
                await w.session.execute(
                    select(Annotation).where(
                        Annotation.user_id == actor.id, Annotation.client_id == client_id
                    )
                )
            ).scalar_one_or_none()
            if earlier is not None:
                return annotation_json(earlier), False
        kept = (
            (
                await w.session.execute(
                    select(Annotation.data).where(
                        Annotation.file_id == file_id, Annotation.user_id == actor.id
                    )
                )
            )
            .scalars()
            .all()
        )
        if len(kept) >= settings.annotation_max_per_file:
            raise Unprocessable(
                f"A reader keeps at most {settings.annotation_max_per_file} annotations "
                "per document.",
                code="too_many_annotations",
            )
        if size + sum(len(json.dumps(old)) for old in kept) > settings.annotation_max_bytes:
            raise PayloadTooLarge(
                f"A reader keeps at most {settings.annotation_max_bytes} bytes of annotations "
                "per document.",
                code="annotations_too_large",
            )
        row = Annotation(
            file_id=file_id,
            user_id=actor.id,
            page=page,
            kind=kind.value,
            data=clean,
            text=str(clean.get("text", "")),
            shared=shared,
            meeting_id=target,
            created_at=w.now,
            space="page",
            client_id=client_id,
        )
        w.session.add(row)
        await w.session.flush()
        result = annotation_json(row)
        if shared and target is not None:
            await w.audit(
                actor.id,
                "meeting.annotation.share",
                meeting_subject(target),
                {"annotation_id": row.id, "file_id": file_id, "page": page, "kind": kind.value},
            )
            await emit_annotation_shared(w, target, annotation=result)
    return result, True


async def visible_annotations(
    ctx: Context, actor: Principal, file_id: int, *, include_shared: bool = True
) -> list[Annotation]:
    """The reader's own annotations of a file, and (optionally) those shared with them."""
    await readable_file(ctx, actor, file_id)
    async with ctx.read() as session:
        mine = Annotation.user_id == actor.id
        if include_shared:
            their_meetings = select(Participant.meeting_id).where(Participant.user_id == actor.id)
            condition = or_(
                mine, Annotation.shared.is_(True) & Annotation.meeting_id.in_(their_meetings)
            )
        else:
            condition = mine
        rows = (
            (
                await session.execute(
                    select(Annotation)
                    .where(Annotation.file_id == file_id, condition)
                    .order_by(Annotation.page, Annotation.id)
                )
            )
            .scalars()
            .all()
        )
    return list(rows)


async def list_annotations(ctx: Context, actor: Principal, file_id: int) -> list[dict[str, Any]]:
    """Own annotations and shared ones of the reader's meetings, by page."""
    return [annotation_json(row) for row in await visible_annotations(ctx, actor, file_id)]


async def delete_annotation(
    ctx: Context, actor: Principal, file_id: int, annotation_id: int
) -> None:
    """Remove one of one's own annotations (404 ``annotation_not_found`` otherwise)."""
    await readable_file(ctx, actor, file_id)
    async with ctx.write() as w:
        row = await w.session.get(Annotation, annotation_id)
        if row is None or row.file_id != file_id or row.user_id != actor.id:
            raise NotFound(
                f"No annotation {annotation_id} of yours on file {file_id}.",
                code="annotation_not_found",
            )
        if row.shared and row.meeting_id is not None:
            await w.audit(
                actor.id,
                "meeting.annotation.unshare",
                meeting_subject(row.meeting_id),
                {"annotation_id": row.id, "file_id": file_id},
            )
            await emit_annotation_removed(w, row.meeting_id, annotation_id=row.id, file_id=file_id)
        await w.session.delete(row)


async def annotated_pdf(
    ctx: Context, actor: Principal, file_id: int, *, include_shared: bool = False
) -> tuple[Path, StoredFile]:
    """The document with the reader's annotations written in as PDF annotations.

    Built by a worker process into a temporary file, which the caller sends and removes.
    422 ``annotation_failed`` when the worker refuses, runs out of time or memory.
    """
    f = await readable_file(ctx, actor, file_id)
    if not f.pages:
        raise Unprocessable(f"File {file_id} is not a paged document.", code="not_a_document")
    rows = await visible_annotations(ctx, actor, file_id, include_shared=include_shared)
    marks = [(row.page, row.kind, row.data, row.id, row.user_id) for row in rows]
    # The reader's copy: stamped with their name like every download (and audited so).
    source = await stamped_copy(ctx, actor, f)
    try:
        pdf = await runtime(ctx).derived_pdf(
            "meeting.annotations:write_annotations_file",
            {"source": str(source), "marks": marks, "author": actor.display_name},
        )
    except (JobRejected, WorkerTimeout, WorkerCrashed) as exc:
        raise Unprocessable(
            f"The annotated copy could not be made: {exc}.", code="annotation_failed"
        ) from exc
    finally:
        discard(source)
    return pdf, f


def _rgb(color: str) -> ArrayObject:
    return ArrayObject(FloatObject(round(int(color[i : i + 2], 16) / 255, 4)) for i in (1, 3, 5))


@dataclass(frozen=True)
class PageFrame:
    """Maps a tablet's page fractions (top-left origin) to PDF points (bottom-left)."""

    left: float
    top: float
    width: float
    height: float

    def at(self, x: float, y: float) -> tuple[float, float]:
        return self.left + x * self.width, self.top - y * self.height


def pdf_annotation(kind: str, data: dict[str, Any], frame: PageFrame) -> DictionaryObject:
    """One stored annotation as a PDF annotation dictionary."""
    if kind == AnnotationKind.INK:
        strokes = [[frame.at(x, y) for x, y in stroke] for stroke in data["strokes"]]
        xs = [p[0] for s in strokes for p in s]
        ys = [p[1] for s in strokes for p in s]
        pad = float(data["width"])
        return DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Annot"),
                NameObject("/Subtype"): NameObject("/Ink"),
                NameObject("/Rect"): ArrayObject(
                    FloatObject(round(v, 3))
                    for v in (min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad)
                ),
                NameObject("/InkList"): ArrayObject(
                    ArrayObject(FloatObject(round(c, 3)) for p in stroke for c in p)
                    for stroke in strokes
                ),
                NameObject("/C"): _rgb(data["color"]),
                NameObject("/BS"): DictionaryObject(
                    {
                        NameObject("/W"): FloatObject(pad),
                        NameObject("/S"): NameObject("/S"),
                    }
                ),
                # Print flag: the mark is printed with the page.
                NameObject("/F"): NumberObject(4),
            }
        )
    if kind == AnnotationKind.HIGHLIGHT:
        quads: list[float] = []
        for x0, y0, x1, y1 in data["rects"]:
            (ax, ay), (bx, by) = frame.at(x0, y0), frame.at(x1, y1)
            lx, rx = min(ax, bx), max(ax, bx)
            lo, hi = min(ay, by), max(ay, by)
            quads.extend([lx, hi, rx, hi, lx, lo, rx, lo])
        rect = (min(quads[0::2]), min(quads[1::2]), max(quads[0::2]), max(quads[1::2]))
        return Highlight(
            rect=rect,
            quad_points=ArrayObject(FloatObject(round(q, 3)) for q in quads),
            highlight_color=data["color"][1:],
        )
    x, y = frame.at(data["x"], data["y"])
    note = Text(rect=(x, y - 24, x + 24, y), text=data["text"], open=False)
    note[NameObject("/C")] = _rgb(data["color"])
    return note


def write_annotations(
    source: Path, marks: Sequence[tuple[int, str, dict[str, Any], int, int]], author: str
) -> bytes:
    """Copy the PDF at ``source`` and add each mark as a PDF annotation (runs in a thread).

    A signed PDF gets them by an incremental update, so its signatures stay valid."""
    reader = PdfReader(source)
    writer = PdfWriter(clone_from=reader)
    added: list[tuple[int, DictionaryObject]] = []
    for page_number, kind, data, annotation_id, _user_id in marks:
        if not 1 <= page_number <= len(writer.pages):
            continue
        box = writer.pages[page_number - 1].mediabox
        frame = PageFrame(float(box.left), float(box.top), float(box.width), float(box.height))
        annotation = pdf_annotation(kind, data, frame)
        annotation[NameObject("/T")] = TextStringObject(author)
        annotation[NameObject("/NM")] = TextStringObject(f"dienhong-annotation-{annotation_id}")
        added.append((page_number - 1, annotation))
    if stamping.is_signed(str(source)):
        return stamping.append_annotations(str(source), added)
    for index, annotation in added:
        writer.add_annotation(index, annotation)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def write_annotations_file(
    source: str, out: str, marks: Sequence[tuple[int, str, dict[str, Any], int, int]], author: str
) -> int:
    """``write_annotations`` into the file ``out``, as a worker job; answers its size."""
    pdf = write_annotations(Path(source), marks, author)
    Path(out).write_bytes(pdf)
    return len(pdf)
