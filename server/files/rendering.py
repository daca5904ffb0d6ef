"""Rendering one page to PNG or WebP with pdfium: runs inside a worker process.

The image is written next to its final place and renamed into it, so a concurrent reader
of the cache sees either nothing or the whole image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from server.files.worker import JobRejected

# zlib level for the PNGs: tablets fetch them over Wi-Fi, but level 9 costs far more CPU
# than it saves bytes on rendered text pages.
PNG_COMPRESS_LEVEL = 6
# A page of text has few colours: lossless WebP keeps it sharp in a fraction of the PNG
# (a 1280 px text page: about 35 KB against 210 KB). A lossless file above this many bits
# per pixel is a photograph or a scan, which the lossy encoder serves far better.
LOSSLESS_MAX_BITS_PER_PIXEL = 1.0
# Encoder effort 4: near the smallest files at half the encoding time of 6.
WEBP_METHOD = 4


def webp_bytes(image: Any, quality: int) -> bytes:
    """A page as WebP: lossless for text pages, lossy at ``quality`` if that is smaller."""
    import io

    lossless = io.BytesIO()
    image.save(lossless, format="WEBP", lossless=True, quality=100, method=WEBP_METHOD)
    if lossless.tell() * 8 <= image.width * image.height * LOSSLESS_MAX_BITS_PER_PIXEL:
        return lossless.getvalue()
    lossy = io.BytesIO()
    image.save(lossy, format="WEBP", quality=quality, method=WEBP_METHOD)
    return min(lossless.getvalue(), lossy.getvalue(), key=len)


def render_page(
    path: str,
    page_index: int,
    width: int,
    out: str,
    max_pixels: int,
    fmt: str = "png",
    quality: int = 80,
) -> dict[str, Any]:
    """Render page ``page_index`` (0-based) ``width`` pixels wide into ``out``, as PNG or
    as WebP of the given ``quality``."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(path)
    try:
        document.init_forms()
        if not 0 <= page_index < len(document):
            raise JobRejected(f"there is no page {page_index + 1}")
        page = document[page_index]
        try:
            page_width, page_height = page.get_size()
            if page_width <= 0 or page_height <= 0:
                raise JobRejected("the page has no area")
            scale = width / page_width
            # pdfium sizes the bitmap with ceil(): keep float error from adding a pixel.
            while math.ceil(page_width * scale) > width:
                scale = math.nextafter(scale, 0)
            if width * page_height * scale > max_pixels:
                scale = math.sqrt(max_pixels / (page_width * page_height))
            bitmap = page.render(scale=scale, may_draw_forms=True)
            image = bitmap.to_pil()
        finally:
            page.close()
    finally:
        document.close()
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    if fmt == "webp":
        partial.write_bytes(webp_bytes(image.convert("RGB"), quality))
    else:
        image.save(partial, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    os.replace(partial, target)
    return {"width": image.width, "height": image.height}
