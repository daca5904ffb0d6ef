"""Text cells for files a spreadsheet opens (CSV exports): none of them runs as a formula.

A cell that begins with ``=``, ``+``, ``-`` or ``@`` is a formula to Excel and LibreOffice
(and one that begins with a tab or a carriage return may become one once trimmed): a
name, a note or a unit typed by anyone would run on the auditor's machine. Such a cell
gets a leading apostrophe, which the spreadsheet shows as text.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> str:
    """A cell's text that no spreadsheet runs: a leading quote before a formula start."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
