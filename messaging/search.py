"""Search over the directives, replies and messages a user may see.

Searchable text is stored folded — without diacritics, lower-case, ``đ`` as ``d`` — so that
``khan cap`` finds ``khẩn cấp``. SQLite matches it with FTS5 (the ``search_fts`` table,
kept in step with ``search_documents`` by triggers); PostgreSQL with full-text search on
``to_tsvector('simple', folded)``. Every query token is a prefix, on both backends.
Access is checked in the same SQL statement, so a result page never shows, nor counts,
what the user may not see.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, column, delete, exists, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from messaging.models import (
    Directive,
    DirectiveReply,
    Message,
    SearchDocument,
    SearchKind,
)
from messaging.visibility import directive_readable_sql, message_readable_sql, reply_readable_sql
from server.auth.principal import Principal
from server.context import Context
from server.errors import BadRequest

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


async def index_document(session: AsyncSession, kind: SearchKind, object_id: int,
                         content: str, at: datetime) -> None:
    """Store (or replace) the folded text of an object, in the caller's transaction."""
    existing = (await session.execute(
        select(SearchDocument).where(SearchDocument.kind == kind.value,
                                     SearchDocument.object_id == object_id)
    )).scalar_one_or_none()
    if existing is None:
        session.add(SearchDocument(kind=kind.value, object_id=object_id, folded=fold(content),
                                   at=at))
    else:
        existing.folded = fold(content)
        existing.at = at
    await session.flush()


async def remove_document(session: AsyncSession, kind: SearchKind, object_id: int) -> None:
    await session.execute(delete(SearchDocument).where(SearchDocument.kind == kind.value,
                                                       SearchDocument.object_id == object_id))


def _match_clause(dialect: str, tokens: list[str]) -> Any:
    if dialect == "postgresql":
        tsquery = " & ".join(f"{token}:*" for token in tokens)
        return text("to_tsvector('simple', search_documents.folded) @@ "
                    "to_tsquery('simple', :tsquery)").bindparams(tsquery=tsquery)
    fts = " ".join(f'"{token}"*' for token in tokens)
    return SearchDocument.id.in_(
        text("SELECT rowid FROM search_fts WHERE search_fts MATCH :fts")
        .bindparams(fts=fts).columns(column("rowid", Integer))
    )


def _visible_clause(principal: Principal) -> Any:
    """What ``principal`` may see, as one SQL condition over ``search_documents``."""
    directive_seen = exists().where(Directive.id == SearchDocument.object_id,
                                    directive_readable_sql(principal))
    reply_seen = exists().where(DirectiveReply.id == SearchDocument.object_id,
                                reply_readable_sql(principal))
    message_seen = exists().where(Message.id == SearchDocument.object_id,
                                  message_readable_sql(principal))
    return or_(
        and_(SearchDocument.kind == SearchKind.DIRECTIVE.value, directive_seen),
        and_(SearchDocument.kind == SearchKind.REPLY.value, reply_seen),
        and_(SearchDocument.kind == SearchKind.MESSAGE.value, message_seen),
    )


async def search(ctx: Context, principal: Principal, query: str,
                 limit: int = MAX_RESULTS) -> list[dict[str, Any]]:
    """The newest matches of ``query`` among what ``principal`` may see."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"A query has at most {MAX_QUERY_CHARS} characters.",
                         code="query_too_long")
    tokens = query_tokens(query)
    if not tokens:
        raise BadRequest("Give at least one word to search for.", code="empty_query")
    limit = max(1, min(limit, MAX_RESULTS))
    async with ctx.read() as session:
        dialect = session.get_bind().dialect.name
        rows = (await session.execute(
            select(SearchDocument)
            .where(_match_clause(dialect, tokens), _visible_clause(principal))
            .order_by(SearchDocument.at.desc(), SearchDocument.id.desc())
            .limit(limit)
        )).scalars().all()
        return [await _result_json(session, row) for row in rows]


async def _result_json(session: AsyncSession, doc: SearchDocument) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": doc.kind, "id": doc.object_id, "at": doc.at}
    if doc.kind == SearchKind.DIRECTIVE.value:
        directive = await session.get(Directive, doc.object_id)
        if directive is not None:
            result |= {"directive_id": directive.id, "title": directive.title,
                       "snippet": directive.body[:SNIPPET_CHARS]}
    elif doc.kind == SearchKind.REPLY.value:
        reply = await session.get(DirectiveReply, doc.object_id)
        if reply is not None:
            result |= {"directive_id": reply.directive_id, "unit_id": reply.unit_id,
                       "snippet": reply.body[:SNIPPET_CHARS]}
    else:
        message = await session.get(Message, doc.object_id)
        if message is not None:
            result |= {"channel_id": message.channel_id, "seq": message.seq,
                       "snippet": message.body[:SNIPPET_CHARS]}
    return result
