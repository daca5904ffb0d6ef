"""Build the WOFF2 subsets of the DejaVu fonts the web client loads first.

The full TTFs are 1.47 MB together; the pages need the Latin and Vietnamese letters, the
usual punctuation and the few symbols the pages draw (arrows, check marks, play buttons).
Run once after changing the ranges and commit the outputs (they are small):

    python -m web_client.build_fonts

The TTFs stay next to them as the fallback for browsers without WOFF2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

FONTS_DIR = Path(__file__).resolve().parent / "static" / "fonts"
FONTS = ("DejaVuSans", "DejaVuSans-Bold")

# Latin: ASCII, Latin-1, Latin Extended-A and -B (names of people and places abroad).
LATIN = [(0x0020, 0x007E), (0x00A0, 0x024F)]
# Vietnamese: combining tone marks, the Latin Extended Additional block, the dong sign.
VIETNAMESE = [(0x0300, 0x0323), (0x1EA0, 0x1EF9), (0x20AB, 0x20AB)]
# Punctuation, symbols and shapes the pages use: dashes, quotes, ellipsis, arrows, minus,
# the page-list and play buttons, the pencil, check and cross marks.
SYMBOLS = [
    (0x02C6, 0x02DD),
    (0x2000, 0x206F),
    (0x20AC, 0x20AC),
    (0x2122, 0x2122),
    (0x2190, 0x21FF),
    (0x2212, 0x2215),
    (0x25A0, 0x25FF),
    (0x2700, 0x27BF),
    (0xFFFD, 0xFFFD),
]
RANGES = LATIN + VIETNAMESE + SYMBOLS


def unicodes() -> list[int]:
    return [code for first, last in RANGES for code in range(first, last + 1)]


def build(source: Path, target: Path) -> int:
    """Write the WOFF2 subset of ``source`` to ``target``; returns its size in bytes."""
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False  # screens of tablets and projectors are not 1990s monitors
    font = TTFont(source)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=unicodes())
    subsetter.subset(font)
    subset.save_font(font, str(target), options)
    return target.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fonts-dir", type=Path, default=FONTS_DIR)
    args = parser.parse_args()
    for name in FONTS:
        size = build(args.fonts_dir / f"{name}.ttf", args.fonts_dir / f"{name}.woff2")
        print(f"{name}.woff2: {size} bytes")


if __name__ == "__main__":
    main()
