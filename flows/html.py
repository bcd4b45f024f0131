"""Static, self-contained HTML pages: every picture is embedded as a PNG data URI, so a report
is one file that opens in any browser, offline, and can be mailed or archived as is."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["Page", "figure_uri", "png_uri", "table", "write_page"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0.4em; vertical-align: top; text-align: center; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.note { color: #555; font-size: 0.9em; }
.warn { color: #a40; }
"""


def png_uri(image: np.ndarray, *, max_side: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 greyscale or RGB array.

    Parameters
    ----------
    image : (H, W) or (H, W, 3) uint8 ndarray
    max_side : int, optional
        Shrink (area-averaged) so the longer side is at most this many pixels.
    """
    picture = Image.fromarray(np.ascontiguousarray(image))
    if max_side is not None and max(picture.size) > max_side:
        picture.thumbnail((max_side, max_side), Image.Resampling.BOX)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def figure_uri(figure: Any) -> str:
    """A PNG data URI of a matplotlib figure (closed afterwards)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.4g}"
    return html.escape(str(value))


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML table of dict rows (columns: the first row's keys unless given)."""
    if not rows:
        return '<p class="note">(no rows)</p>'
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
        self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None
    ) -> None:
        self._parts.append(table(rows, columns))

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
