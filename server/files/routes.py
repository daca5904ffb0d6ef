"""HTTP routes of the files feature: upload, download (stamped for PDFs), page images."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from server.errors import BadRequest, NotFound
from server.files import service
from server.files.models import StoredFile
from server.files.runtime import runtime
from server.files.storage import discard
from server.files.upload import receive_file
from server.http import JSON, context, current_user, path_int
from server.settings import Settings
from server.signing.uploads import signatures_of_file

# Rendered pages never change for a given (content, page, width), but they are only for
# readers of the file: private caches only.
PAGE_CACHE_CONTROL = "private, max-age=31536000, immutable"
# Bumped when rendering changes, so clients drop pages cached under old ETags.
RENDER_VERSION = 1
MIN_RENDER_WIDTH = 16
PAGE_MEDIA_TYPES = {"png": "image/png", "webp": "image/webp"}


def _through_proxy(
    prefix: str, base: Path, path: Path, media_type: str, headers: dict[str, str]
) -> Response:
    """An empty answer naming ``path`` (under ``base``) in the proxy's internal location
    ``prefix``: the proxy sends the bytes, with this answer's headers and ranges."""
    relative = path.relative_to(base).as_posix()
    return Response(
        status_code=200,
        media_type=media_type,
        headers={**headers, "X-Accel-Redirect": prefix.rstrip("/") + "/" + relative},
    )


def _disposition(f: StoredFile, kind: str = "attachment") -> str:
    ascii_name = f.name.encode("ascii", "replace").decode().replace('"', "'") or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(f.name, safe='')}"


async def upload(request: Request) -> Response:
    principal = await current_user(request)
    ctx = context(request)
    received = await receive_file(request, runtime(ctx).store, ctx.settings.max_upload_bytes)
    row = await service.upload_file(ctx, principal, received)
    signatures = await signatures_of_file(ctx, row.id)
    return JSON(
        service.file_json(row) | {"title": row.title, "signatures": signatures}, status_code=201
    )


async def metadata(request: Request) -> Response:
    principal = await current_user(request)
    ctx = context(request)
    f = await service.readable_file(ctx, principal, path_int(request, "file_id"))
    return JSON(
        service.file_json(f)
        | {
            "title": f.title,
            "created_at": f.created_at,
            "uploader_id": f.uploader_id,
            "signatures": await signatures_of_file(ctx, f.id),
        }
    )


async def download(request: Request) -> Response:
    principal = await current_user(request)
    ctx = context(request)
    f = await service.readable_file(ctx, principal, path_int(request, "file_id"))
    headers = {
        "Content-Disposition": _disposition(f),
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
        # A served file never runs anything in our origin, whatever it contains.
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    prefix = ctx.settings.accel_redirect_files_prefix
    files_root = runtime(ctx).store.root
    if f.content_type == "application/pdf":
        copy = await service.stamped_copy(ctx, principal, f)
        if prefix:
            asyncio.get_running_loop().call_later(
                max(0.0, ctx.settings.stamped_copy_grace_secs), discard, copy
            )
            return _through_proxy(prefix, files_root, copy, f.content_type, headers)
        return FileResponse(
            copy,
            media_type=f.content_type,
            headers=headers,
            background=BackgroundTask(discard, copy),
        )
    content = service.content_path(ctx, f)
    if prefix:
        return _through_proxy(prefix, files_root, content, f.content_type, headers)
    return FileResponse(content, media_type=f.content_type, headers=headers)


def _width(request: Request, default: int, maximum: int) -> int:
    raw = request.query_params.get("width")
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not MIN_RENDER_WIDTH <= int(raw) <= maximum:
        raise BadRequest(
            f"width must be a whole number from {MIN_RENDER_WIDTH} to {maximum}.",
            code="invalid_width",
        )
    return int(raw)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def width_steps(settings: Settings) -> list[int]:
    """The widths WebP pages are rendered at, ascending (the setting, checked)."""
    steps = sorted(
        {
            int(step)
            for step in settings.render_width_steps
            if step.strip().isdigit() and MIN_RENDER_WIDTH <= int(step) <= settings.render_max_width
        }
    )
    return steps or [settings.render_default_width]


def snapped_width(width: int, steps: list[int]) -> int:
    """The first step at least ``width`` wide (the largest step for wider requests)."""
    return next((step for step in steps if step >= width), steps[-1])


async def _page(request: Request, fmt: str, file_id: int, number: int) -> Response:
    principal = await current_user(request)
    ctx = context(request)
    settings = ctx.settings
    f = await service.page_source(ctx, principal, file_id)
    width = _width(request, settings.render_default_width, settings.render_max_width)
    if fmt == "webp":
        width = snapped_width(width, width_steps(settings))
    if f.pages is None or not 1 <= number <= f.pages:
        raise NotFound(f"File {f.id} has no page {number}.", code="page_not_found")
    suffix = "" if fmt == "png" else f"-{fmt}"
    etag = f'"{f.sha256[:24]}-{number}-{width}-r{RENDER_VERSION}{suffix}"'
    headers = {
        "ETag": etag,
        "Cache-Control": PAGE_CACHE_CONTROL,
        "X-Content-Type-Options": "nosniff",
        "X-Page-Width": str(width),
    }
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    media_type = PAGE_MEDIA_TYPES[fmt]
    prefix = settings.accel_redirect_prefix
    if not prefix:
        data = await service.page_bytes(ctx, f, number, width, fmt)
        return Response(data, media_type=media_type, headers=headers)
    # The proxy sends the cached image from its internal location; this answer only says
    # which one, after the reader was authorised above.
    path = await service.page_image(ctx, f, number, width, fmt)
    return _through_proxy(prefix, runtime(ctx).store.renders, path, media_type, headers)


async def page(request: Request) -> Response:
    return await _page(request, "png", path_int(request, "file_id"), path_int(request, "page"))


async def page_webp(request: Request) -> Response:
    return await _page(request, "webp", path_int(request, "file_id"), path_int(request, "page"))


routes: list[BaseRoute] = [
    Route("/api/v1/files", upload, methods=["POST"]),
    Route("/api/v1/files/{file_id}", download, methods=["GET"]),
    Route("/api/v1/files/{file_id}/meta", metadata, methods=["GET"]),
    Route("/api/v1/files/{file_id}/pages/{page}.png", page, methods=["GET"]),
    Route("/api/v1/files/{file_id}/pages/{page}.webp", page_webp, methods=["GET"]),
]
