"""Making user-controlled text safe to show in a terminal, a log line or a one-line message.

Folder and file names, ``--editor`` values and case.json fields are chosen by whoever made the
data. Printed raw, an ESC character starts a terminal control sequence (recolouring, moving the
cursor, rewriting earlier lines) and a newline forges a separate log or message line.
:func:`printable` spells every such character out instead.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

# Unicode categories that are invisible or act on the terminal or on text layout: controls
# (C0, DEL, C1: ESC, CR, LF, ...), format characters (bidirectional overrides, zero-width
# joiners) and the line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def printable(text: str) -> str:
    """Return ``text`` with every control, format and line-separator character escaped.

    Parameters
    ----------
    text : str
        Text from a user or a file (a folder name, an editor name, a case.json value).

    Returns
    -------
    safe : str
        ``text`` with each unsafe character replaced by its Python escape (``\\x1b``,
        ``\\n``, ``\\u202e``); every other character, accented and non-Latin letters
        included, is kept. The result holds no line break.

    Example
    -------
    >>> printable("exam\\x1b[2J\\nDONE")
    'exam\\\\x1b[2J\\\\nDONE'
    >>> printable("Jos\u00e9 M\u00fcller")
    'Jos\u00e9 M\u00fcller'
    """
    if not isinstance(text, str):
        raise TypeError(f"printable() takes a str, got {type(text).__name__}")
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _UNSAFE_CATEGORIES
        else ch
        for ch in text
    )
