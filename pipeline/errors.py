"""The one base class of every error angioflow reports to its users.

An :class:`AngioflowError` is an expected failure (bad input, a refused request, a damaged or
missing file): its message is one line that names the case or file and says how to fix it, and
the command line prints it without a traceback. Each subclass also keeps the builtin it refines
(``ValueError`` for input that cannot be used, ``OSError`` for a full disk) so that library code
catching those still does. Anything else raised is a defect. :func:`read_text` turns a text
file that cannot be read into the caller's error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class AngioflowError(Exception):
    """An expected failure whose message tells the user what is wrong and how to fix it."""


def read_text(
    path: Path, encoding: str, refuse: Callable[[OSError | UnicodeDecodeError], AngioflowError]
) -> str:
    """The text of the file ``path``.

    Raises
    ------
    AngioflowError
        ``refuse(error)``, when the file cannot be read or is not ``encoding`` text; its message
        names the file and says how to fix it.
    """
    try:
        return path.read_text(encoding=encoding)
    except (OSError, UnicodeDecodeError) as error:
        raise refuse(error) from None
