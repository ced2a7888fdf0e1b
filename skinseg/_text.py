"""File names and cells as skinseg writes them into text files (private): the one place for both rules.

**File names that are not valid UTF-8.** On Linux a file name is bytes; Python hands
the bytes that are not UTF-8 over as lone surrogates ("surrogateescape"), which no UTF-8
text file can hold. :func:`text_name` writes every name losslessly and readably: a byte
that is not part of valid UTF-8 becomes ``\\xHH`` (two hex digits) and a backslash is
doubled, so :func:`name_from_text` recovers the exact bytes (``os.fsencode`` of the
name). Names that are valid UTF-8 without a backslash (every ISIC name) are unchanged.

**Spreadsheet formulas.** A CSV cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return is run as a formula by Excel, LibreOffice and Google Sheets (CSV
injection: a file named ``=HYPERLINK(...).jpg``). :func:`csv_cell` neutralises such text
the OWASP way, with a leading single quote (``'=HYPERLINK(...).jpg``); a cell that is a
number (``-0.5``, ``-1e-05``, ``-inf``) is left as it is, and numbers given as ints or
floats never change. Every CSV skinseg writes goes through :func:`csv_line` or
:func:`csv_cell` (``results.csv``, ``classification.csv``, ``timings.csv``,
``per_image.csv``).

Standard library only, so every stage can use it.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from typing import Any

__all__ = ["text_name", "name_from_text", "csv_cell", "csv_line", "name_from_cell", "FORMULA_PREFIXES"]

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def text_name(name: str) -> str:
    r"""``name`` as UTF-8 text, losslessly: bytes that are not UTF-8 as ``\xHH``, backslashes doubled.

    >>> text_name("ISIC_0000000.jpg")
    'ISIC_0000000.jpg'
    >>> text_name(os.fsdecode(b"caf\xe9\\x.jpg"))
    'caf\\xe9\\\\x.jpg'
    """
    if "\\" not in name:
        try:
            name.encode("utf-8")
            return name
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(name) if _only_escapes(name) else name.encode("utf-8", "surrogatepass")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def _only_escapes(name: str) -> bool:
    """True if every surrogate in ``name`` is one that surrogateescape makes (U+DC80..U+DCFF)."""
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in name)


def name_from_text(text: str) -> bytes:
    r"""The file name bytes that :func:`text_name` wrote as ``text`` (for readers of skinseg's files).

    >>> name_from_text(text_name(os.fsdecode(b"caf\xe9\\x.jpg")))
    b'caf\xe9\\x.jpg'
    """
    if "\\" not in text:
        return text.encode("utf-8")
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c == "\\" and text[i + 1 : i + 2] == "\\":
            out += b"\\"
            i += 2
        elif c == "\\" and text[i + 1 : i + 2] == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        else:
            out += c.encode("utf-8")
            i += 1
    return bytes(out)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """A value as skinseg writes it into a CSV cell: None as empty, names as UTF-8 text, formulas neutralised.

    >>> csv_cell("=HYPERLINK(\\"http://x\\").jpg"), csv_cell("-0.5"), csv_cell(-0.5), csv_cell(None)
    ('\\'=HYPERLINK("http://x").jpg', '-0.5', -0.5, '')
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    text = text_name(value)
    if text.startswith(FORMULA_PREFIXES) and not _is_number(text):
        return "'" + text
    return text


def name_from_cell(cell: str) -> str:
    r"""The file name (``os.fsdecode`` form) that :func:`csv_cell` wrote as ``cell``: the neutralising quote
    dropped, the escapes undone (a name that itself starts with a quote and a formula character reads without
    its quote).

    >>> name_from_cell(csv_cell("=x.jpg")), name_from_cell(csv_cell(os.fsdecode(b"\xff.jpg"))) == os.fsdecode(b"\xff.jpg")
    ('=x.jpg', True)
    """
    if cell.startswith("'") and cell[1:2] and cell[1] in FORMULA_PREFIXES:
        cell = cell[1:]
    return os.fsdecode(name_from_text(cell))


def csv_line(values: Sequence[Any], lineterminator: str = "\n") -> str:
    """One CSV line (RFC 4180 quoting) of ``values``, each through :func:`csv_cell`."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerow([csv_cell(v) for v in values])
    return buf.getvalue()
