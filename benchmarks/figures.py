"""What the figure scripts share: matplotlib drawing to files only, their --data and --out
options, a grid of titled pictures, and saving the figure."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from angioflow.flows.catalog import find_catalog, public_data_folder

matplotlib.use("Agg")  # the figures are files: no display needed
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["figure_parser", "plt", "save_figure", "show_panels"]


def figure_parser(description: str, out: Path) -> argparse.ArgumentParser:
    """The options every figure takes: the public datasets folder and where to write."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=public_data_folder(find_catalog()))
    parser.add_argument("--out", type=Path, default=out)
    return parser


def show_panels(
    axes: np.ndarray, panels: Sequence[tuple[np.ndarray, str]], *, fontsize: float | str = "large"
) -> None:
    """Each (picture, title) on its axis, row by row: grey for a 2-D picture, no axis lines."""
    for axis, (picture, title) in zip(np.ravel(axes), panels, strict=True):
        axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        axis.set_title(title, fontsize=fontsize)
        axis.axis("off")


def save_figure(figure: plt.Figure, path: Path, *, dpi: int) -> None:
    """Lay the figure out, write it to ``path`` (its folder made) and print the path."""
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    print(path)
