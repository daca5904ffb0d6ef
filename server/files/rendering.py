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


def render_page(path: str, page_index: int, width: int, out: str,
                max_pixels: int, fmt: str = "png", quality: int = 80) -> dict[str, Any]:
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
        # method 4: near the smallest files at half the encoding time of 6.
        image.convert("RGB").save(partial, format="WEBP", quality=quality, method=4)
    else:
        image.save(partial, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    os.replace(partial, target)
    return {"width": image.width, "height": image.height}
