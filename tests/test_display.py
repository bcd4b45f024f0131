"""printable(): user-controlled text is safe to print in one line."""

from __future__ import annotations

import pytest
from angioflow.pipeline.display import printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("exam_0007", "exam_0007"),
        ("José Müller 山田", "José Müller 山田"),  # letters of every script are kept
        ("a\x1b[2Jb", "a\\x1b[2Jb"),  # ESC: a terminal control sequence
        ("one\ntwo\r", "one\\ntwo\\r"),  # a forged second line
        ("tab\there", "tab\\there"),
        ("\x7f\x9b", "\\x7f\\x9b"),  # DEL and the C1 control sequence introducer
        ("abc\u202etxt.exe", "abc\\u202etxt.exe"),  # right-to-left override
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_control_and_format_characters_are_spelled_out(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_printable_is_idempotent_on_safe_text_and_rejects_non_strings() -> None:
    once = printable("x\x1by")
    assert printable(once) == once
    with pytest.raises(TypeError, match="takes a str"):
        printable(b"bytes")  # type: ignore[arg-type]
