"""Fonts shipped with the server, so Vietnamese text renders on a machine without them.

DejaVu Sans covers the whole Vietnamese alphabet (precomposed letters with two diacritics
such as ệ, ở, ữ). The licence (Bitstream Vera terms, DejaVu changes public domain) is in
``LICENSE-DejaVu.txt`` next to the fonts and allows redistribution with the software.
"""

from __future__ import annotations

from pathlib import Path

FONTS_DIR = Path(__file__).resolve().parent
FONT_REGULAR: Path = FONTS_DIR / "DejaVuSans.ttf"
FONT_BOLD: Path = FONTS_DIR / "DejaVuSans-Bold.ttf"

__all__ = ["FONTS_DIR", "FONT_BOLD", "FONT_REGULAR"]
