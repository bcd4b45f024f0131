"""Static, self-contained HTML pages: every picture is embedded as a data URI (PNG for figures
and masks, JPEG for photo-like thumbnails), so a report is one file that opens in any browser,
offline or from a remote Prefect UI, and can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Page", "figure_uri", "jpeg_uri", "png_uri", "table", "write_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1200px;
       color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; vertical-align: top;
         overflow-wrap: break-word; }
table.wide { table-layout: fixed; width: 100%; font-size: 0.8em; }
table.wide th, table.wide td { padding: 0.25em 0.3em; }
table.wide th, table.wide td { overflow-wrap: anywhere; }
th:first-child, td:first-child, .text { text-align: left; }
th { background: #f2f2f2; }
tr.flagged td:first-child { border-left: 4px solid #c53; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; text-align: center;
         max-width: calc(100% - 0.8em); }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.note { color: #555; font-size: 0.9em; }
.warn { color: #a40; }
"""


def _thumbnail(image: np.ndarray, max_side: int | None) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(image))
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return picture


def png_uri(image: np.ndarray, *, max_side: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 greyscale or RGB array (lossless: masks,
    figures).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
    max_side : int, optional
        Shrink (area-averaged) so the longer side is at most this many pixels.
    """
    buffer = io.BytesIO()
    _thumbnail(image, max_side).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def jpeg_uri(image: np.ndarray, *, max_side: int | None = None, quality: int = 80) -> str:
    """A ``data:image/jpeg;base64,...`` URI of a uint8 greyscale or RGB array: photo-like
    thumbnails at a fraction of a PNG's size (no metadata is written).

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
    max_side : int, optional
        Shrink (area-averaged) so the longer side is at most this many pixels.
    quality : int
        JPEG quality, 1-95.
    """
    buffer = io.BytesIO()
    _thumbnail(image, max_side).save(buffer, format="JPEG", quality=quality, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_uri(figure: Any) -> str:
    """A PNG data URI of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _header(name: str) -> str:
    """An escaped column name that may also wrap after '_' and '/' (snake_case statistic names),
    so a table of many columns fits the page instead of running off it. Only column names, which
    the code chooses, get the break hints: cell text stays byte-for-byte searchable (the privacy
    audit scans reports for identifiers)."""
    return html.escape(name).replace("_", "_<wbr>").replace("/", "/<wbr>")


def _text(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    return str(value)


# Tables of more columns than this (or with text columns) span the page at a fixed layout
# (see :func:`table`).
_WIDE_TABLE = 7
_MAX_SHARE = 24


def _share(column: str, texts: Sequence[str]) -> float:
    """Width share of a wide table's column: its longest header word (bold, so weighted 1.3)
    or cell text in characters, at most ``_MAX_SHARE`` (longer text wraps), plus the padding."""
    header = 1.3 * max(len(word) for word in re.split(r"[ _/]", column))
    return min(_MAX_SHARE, max([3, header, *(len(text) for text in texts)])) + 1.5


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    text_columns: Collection[str] = (),
    row_classes: Sequence[str | None] | None = None,
) -> str:
    """An HTML table of dict rows (columns: the first row's keys unless given).

    ``text_columns`` are left-aligned (prose such as errors); ``row_classes`` gives each row a
    CSS class (``"flagged"`` marks a row with a red left border). A table of more than
    ``_WIDE_TABLE`` columns, or with text columns, spans the page at a fixed layout with each
    column's width in proportion to its content (capped), its cells wrapping, so it never runs
    off the page and prose does not starve the other columns.
    """
    if not rows:
        return '<p class="note">(no rows)</p>'
    columns = list(columns or rows[0].keys())
    texts = [[_text(row.get(c, "")) for c in columns] for row in rows]
    head = "".join(
        ('<th class="text">' if c in text_columns else "<th>") + f"{_header(c)}</th>"
        for c in columns
    )
    cells = ['<td class="text">' if c in text_columns else "<td>" for c in columns]
    classes = row_classes if row_classes is not None else [None] * len(rows)
    body = "".join(
        (f'<tr class="{css}">' if css else "<tr>")
        + "".join(f"{cell}{html.escape(text)}</td>" for cell, text in zip(cells, line, strict=True))
        + "</tr>"
        for line, css in zip(texts, classes, strict=True)
    )
    if len(columns) <= _WIDE_TABLE and not text_columns:
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    shares = [_share(c, [line[i] for line in texts]) for i, c in enumerate(columns)]
    widths = "".join(f'<col style="width:{100 * w / sum(shares):.2f}%">' for w in shares)
    return (
        f'<table class="wide"><colgroup>{widths}</colgroup><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


class Page:
    """An HTML report built section by section.

    Example
    -------
    >>> page = Page("Run 7")
    >>> page.section("Metrics").paragraph("All good.")
    >>> "<h2>Metrics</h2>" in page.render()
    True
    """

    def __init__(self, title: str) -> None:
        self.title = title
        self._parts: list[str] = []

    def section(self, heading: str) -> Page:
        self._parts.append(f"<h2>{html.escape(heading)}</h2>")
        return self

    def paragraph(self, text: str, *, css: str | None = None) -> None:
        attribute = f' class="{css}"' if css else ""
        self._parts.append(f"<p{attribute}>{html.escape(text)}</p>")

    def table(
        self,
        rows: Sequence[Mapping[str, Any]],
        columns: Sequence[str] | None = None,
        *,
        text_columns: Collection[str] = (),
        row_classes: Sequence[str | None] | None = None,
    ) -> None:
        self._parts.append(table(rows, columns, text_columns=text_columns, row_classes=row_classes))

    def images(self, items: Sequence[tuple[str, str]], *, width: int = 256) -> None:
        """Pictures side by side: (caption, data URI) pairs."""
        self._parts.append(
            "<div>"
            + "".join(
                f'<figure style="width:{width}px"><img src="{uri}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                for caption, uri in items
            )
            + "</div>"
        )

    def render(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head>"
            f"<body><h1>{html.escape(self.title)}</h1>{''.join(self._parts)}</body></html>\n"
        )


def write_page(page: Page, path: Path) -> Path:
    """Write the page atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(page.render(), encoding="utf-8")
    os.replace(temp, path)
    return path
