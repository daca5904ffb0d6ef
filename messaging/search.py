"""Search over the directives, replies, messages and attached files a user may see.

Searchable text is stored folded — without diacritics, lower-case, ``đ`` as ``d`` — so that
``khan cap`` finds ``khẩn cấp``. SQLite matches it with FTS5 (the ``search_fts`` table,
kept in step with ``search_documents`` by triggers); PostgreSQL with full-text search on
``to_tsvector('simple', folded)``. Every query token is a prefix, on both backends.
Access is checked in the same SQL statement, so a result page never shows, nor counts,
what the user may not see.

Each result has ``kind`` (directive, reply, message or attachment), ``at``, ``author_name``,
a ``snippet`` around the first match and ``highlights``: ``[start, end]`` character offsets
of the matched words within the snippet. An attachment (the text extracted from a file
attached to something the reader may see) also has ``file_id``, ``name`` and where the
reader sees it attached (``channel_id`` or ``directive_id``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, column, delete, exists, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from messaging.models import (
    Directive,
    DirectiveAttachment,
    DirectiveReply,
    Message,
    MessageAttachment,
    ReplyAttachment,
    SearchDocument,
    SearchKind,
)
from messaging.visibility import (
    attachment_readable_sql,
    directive_readable_sql,
    message_readable_sql,
    reply_readable_sql,
)
from server.auth.principal import Principal
from server.clock import utc_iso
from server.context import Context
from server.db import SENT_LATER
from server.errors import BadRequest
from server.files.models import StoredFile
from server.org.service import display_names

# Longest query accepted, and most tokens used from it.
MAX_QUERY_CHARS = 200
MAX_QUERY_TOKENS = 8
# Results per page of search.
MAX_RESULTS = 50
SNIPPET_CHARS = 160

_TOKEN = re.compile(r"[^\W_]+")
_EXTRA_FOLDS = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "ł": "l", "Ł": "l"})


def fold(value: str) -> str:
    """Unaccented lower-case text: ``Khẩn cấp — Đà Nẵng`` → ``khan cap — da nang``."""
    decomposed = unicodedata.normalize("NFD", value.translate(_EXTRA_FOLDS))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).lower()


def query_tokens(query: str) -> list[str]:
    tokens = _TOKEN.findall(fold(query))
    return tokens[:MAX_QUERY_TOKENS]


async def index_document(
    session: AsyncSession, kind: SearchKind, object_id: int, content: str, at: datetime
) -> None:
    """Store (or replace) the folded text of an object, in the caller's transaction."""
    existing = (
        await session.execute(
            select(SearchDocument).where(
                SearchDocument.kind == kind.value, SearchDocument.object_id == object_id
            )
        )
    ).scalar_one_or_none()
    if existing is None:
        session.add(
            SearchDocument(kind=kind.value, object_id=object_id, folded=fold(content), at=at)
        )
    else:
        existing.folded = fold(content)
        existing.at = at
    await session.flush()


# Built once (a Core statement: the ORM's bulk insert costs more than the insert).
_INSERT_DOCUMENTS = insert(SearchDocument.__table__).execution_options(**SENT_LATER)


async def index_new_documents(
    session: AsyncSession,
    kind: SearchKind,
    documents: Sequence[tuple[int, str]],
    at: datetime,
    *,
    folded: bool = False,
) -> None:
    """``index_document`` for objects that have no document yet, in one statement.
    ``folded``: the texts given are already ``fold``-ed (done before the transaction)."""
    if documents:
        await session.execute(
            _INSERT_DOCUMENTS,
            [
                {
                    "kind": kind.value,
                    "object_id": object_id,
                    "folded": content if folded else fold(content),
                    "at": at,
                }
                for object_id, content in documents
            ],
        )


async def remove_document(session: AsyncSession, kind: SearchKind, object_id: int) -> None:
    await session.execute(
        delete(SearchDocument).where(
            SearchDocument.kind == kind.value, SearchDocument.object_id == object_id
        )
    )


def _match_clause(dialect: str, tokens: list[str]) -> Any:
    if dialect == "postgresql":
        tsquery = " & ".join(f"{token}:*" for token in tokens)
        return text(
            "to_tsvector('simple', search_documents.folded) @@ to_tsquery('simple', :tsquery)"
        ).bindparams(tsquery=tsquery)
    fts = " ".join(f'"{token}"*' for token in tokens)
    return SearchDocument.id.in_(
        text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts")
        .bindparams(fts=fts)
        .columns(column("rowid", Integer))
    )


def _visible_clause(principal: Principal) -> Any:
    """What ``principal`` may see, as one SQL condition over ``search_documents``."""
    directive_seen = exists().where(
        Directive.id == SearchDocument.object_id, directive_readable_sql(principal)
    )
    reply_seen = exists().where(
        DirectiveReply.id == SearchDocument.object_id, reply_readable_sql(principal)
    )
    message_seen = exists().where(
        Message.id == SearchDocument.object_id, message_readable_sql(principal)
    )
    return or_(
        and_(SearchDocument.kind == SearchKind.DIRECTIVE.value, directive_seen),
        and_(SearchDocument.kind == SearchKind.REPLY.value, reply_seen),
        and_(SearchDocument.kind == SearchKind.MESSAGE.value, message_seen),
        and_(
            SearchDocument.kind == SearchKind.ATTACHMENT.value,
            attachment_readable_sql(principal, SearchDocument.object_id),
        ),
    )


async def search(
    ctx: Context, principal: Principal, query: str, limit: int = MAX_RESULTS
) -> list[dict[str, Any]]:
    """The newest matches of ``query`` among what ``principal`` may see, each with its
    kind, time, author, a snippet around the first match and the matched words in it."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(
            f"A query has at most {MAX_QUERY_CHARS} characters.", code="query_too_long"
        )
    tokens = query_tokens(query)
    if not tokens:
        raise BadRequest("Give at least one word to search for.", code="empty_query")
    limit = max(1, min(limit, MAX_RESULTS))
    async with ctx.read() as session:
        dialect = session.get_bind().dialect.name
        rows = (
            (
                await session.execute(
                    select(SearchDocument)
                    .where(_match_clause(dialect, tokens), _visible_clause(principal))
                    .order_by(SearchDocument.at.desc(), SearchDocument.id.desc())
                    .limit(limit)
                )
            )
            .scalars()
            .all()
        )
        found = [await _result_json(session, principal, row) for row in rows]
        names = await display_names(
            session, {r["_author"] for r in found if r["_author"] is not None}
        )
    results = []
    for result in found:
        author = result.pop("_author", None)
        result["author_name"] = names.get(author, "") if author is not None else ""
        text_ = result.pop("_text", "")
        result["snippet"], result["highlights"] = snippet(text_, tokens)
        results.append(result)
    return results


async def _result_json(
    session: AsyncSession, principal: Principal, doc: SearchDocument
) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": doc.kind, "id": doc.object_id, "at": utc_iso(doc.at)}
    author: int | None = None
    text_ = ""
    if doc.kind == SearchKind.DIRECTIVE.value:
        directive = await session.get(Directive, doc.object_id)
        if directive is not None:
            result |= {"directive_id": directive.id, "title": directive.title}
            author, text_ = directive.sender_id, f"{directive.title}\n{directive.body}"
    elif doc.kind == SearchKind.REPLY.value:
        reply = await session.get(DirectiveReply, doc.object_id)
        if reply is not None:
            result |= {"directive_id": reply.directive_id, "unit_id": reply.unit_id}
            author, text_ = reply.author_id, reply.body
    elif doc.kind == SearchKind.ATTACHMENT.value:
        stored = await session.get(StoredFile, doc.object_id, options=[undefer(StoredFile.text)])
        if stored is not None:
            result |= {"file_id": stored.id, "name": stored.name}
            result |= await where_attached(session, principal, stored.id)
            author, text_ = stored.uploader_id, f"{stored.name}\n{stored.text}"
    else:
        message = await session.get(Message, doc.object_id)
        if message is not None:
            result |= {"channel_id": message.channel_id, "seq": message.seq}
            author, text_ = message.author_id, message.body
    # Taken out again by ``search``: the author's name is read once for the page.
    result["_author"] = author
    result["_text"] = text_
    return result


def _folded_with_positions(value: str) -> tuple[str, list[int]]:
    """``fold(value)`` and, for each of its characters, the index in ``value`` it came from
    (folding may change lengths, so offsets are mapped back character by character)."""
    pieces: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(value):
        folded = fold(char)
        pieces.append(folded)
        origin.extend([index] * len(folded))
    return "".join(pieces), origin


def snippet(
    value: str, tokens: list[str], width: int = SNIPPET_CHARS
) -> tuple[str, list[list[int]]]:
    """About ``width`` characters of ``value`` around the first word matching a query
    token (as a prefix, accents and case aside), and the ``[start, end]`` character
    offsets within it of every matched word."""
    folded, origin = _folded_with_positions(value)
    pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(re.escape(t) for t in tokens) + r")[^\W_]*")
    spans = []
    for match in pattern.finditer(folded):
        if match.end() > match.start():
            spans.append((origin[match.start()], origin[match.end() - 1] + 1))
    first = spans[0][0] if spans else 0
    start = max(0, first - width // 4)
    if start > 0:
        # Begin at a word: after the nearest space before the window.
        space = value.rfind(" ", 0, start)
        start = space + 1 if space >= 0 and first - space <= width // 2 else start
    end = min(len(value), start + width)
    text_ = value[start:end].replace("\n", " ").replace("\f", " ")
    highlights = [[s - start, min(e, end) - start] for s, e in spans if start <= s < end]
    return text_, highlights


async def where_attached(
    session: AsyncSession, principal: Principal, file_id: int
) -> dict[str, int]:
    """Where ``principal`` sees the file attached: ``channel_id`` of a message, or
    ``directive_id`` of a directive or a reply (the newest such place)."""
    channel = (
        await session.execute(
            select(Message.channel_id)
            .join(MessageAttachment, MessageAttachment.message_id == Message.id)
            .where(MessageAttachment.file_id == file_id, message_readable_sql(principal))
            .order_by(Message.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if channel is not None:
        return {"channel_id": int(channel)}
    directive = (
        await session.execute(
            select(Directive.id)
            .join(DirectiveAttachment, DirectiveAttachment.directive_id == Directive.id)
            .where(DirectiveAttachment.file_id == file_id, directive_readable_sql(principal))
            .order_by(Directive.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    if directive is None:
        directive = (
            await session.execute(
                select(DirectiveReply.directive_id)
                .join(ReplyAttachment, ReplyAttachment.reply_id == DirectiveReply.id)
                .join(Directive, Directive.id == DirectiveReply.directive_id)
                .where(ReplyAttachment.file_id == file_id, reply_readable_sql(principal))
                .order_by(DirectiveReply.id.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    return {"directive_id": int(directive)} if directive is not None else {}
