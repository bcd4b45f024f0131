"""The one artery/vein (A/V) label encoding of angioflow, and its RGB rendering for people.

Every A/V mask angioflow stores or writes for machines (case store versions, export HDF5 and
folders, synthetic sets, DDPM mask sets) holds **class indices**:

=====  ==========================  ===============  =======================
index  name                        display colour   meaning
=====  ==========================  ===============  =======================
0      ``background``              black (0, 0, 0)  not a vessel
1      ``artery``                  red (255, 0, 0)  artery pixel
2      ``vein``                    blue (0, 0, 255) vein pixel
3      ``crossing_or_uncertain``   white            artery over vein, or the annotator could
                                                    not tell
=====  ==========================  ===============  =======================

RGB (red artery, blue vein, white crossing on black) is only a rendering: pictures for people
(``inspect``, ``label-av``'s PNG, previews) and an input accepted at the edges, where the
public datasets' colour annotations (RITE, LES-AV, HRF-AV) are converted to class indices by
:func:`av_labels_from_rgb`. Vessel masks are 0 background / 1 vessel (0/255 in PNG files).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AV_CLASSES",
    "AV_RGB",
    "av_labels_from_rgb",
    "av_legend",
    "av_to_rgb",
    "folder_legend",
]

# Class index -> name; the index is the value stored in every machine-readable A/V mask.
AV_CLASSES = ("background", "artery", "vein", "crossing_or_uncertain")

# Class index -> display colour (RGB uint8): black, red artery, blue vein, white crossing.
AV_RGB = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255], [255, 255, 255]], np.uint8)


def av_to_rgb(av: np.ndarray) -> np.ndarray:
    """Render A/V class indices as a picture for people.

    Parameters
    ----------
    av : (H, W) integer ndarray
        Class indices of :data:`AV_CLASSES`; values above 3 are drawn as 3.

    Returns
    -------
    rgb : (H, W, 3) uint8 ndarray
        Black background, red artery, blue vein, white crossing or uncertain.

    Example
    -------
    >>> av_to_rgb(np.array([[0, 1, 2, 3]]))[0].tolist()
    [[0, 0, 0], [255, 0, 0], [0, 0, 255], [255, 255, 255]]
    """
    return AV_RGB[np.clip(av, 0, len(AV_CLASSES) - 1)]


def av_labels_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Decode an RGB A/V annotation (red artery, blue vein, green crossing, white uncertain)
    into class indices.

    Colours are classified by their dominant channel, so the stray near-red/near-blue values
    some files carry land in the right class; anything bright but not clearly one class is 3.

    Parameters
    ----------
    rgb : (H, W, 3) or (H, W, 4) uint8 ndarray
        The first three channels are read.

    Returns
    -------
    labels : (H, W) uint8 ndarray with values in {0, 1, 2, 3}

    Raises
    ------
    ValueError
        If ``rgb`` is not (H, W, 3+).

    Example
    -------
    >>> av_labels_from_rgb(av_to_rgb(np.array([[0, 1, 2, 3]]))).tolist()
    [[0, 1, 2, 3]]
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"A/V annotation must be (H, W, 3) RGB, got {rgb.shape}")
    r, g, b = (rgb[..., i].astype(np.int16) for i in range(3))
    labelled = np.maximum(np.maximum(r, g), b) > 127
    artery = labelled & (r > 127) & (g < 128) & (b < 128)
    vein = labelled & (b > 127) & (r < 128) & (g < 128)
    labels = np.where(labelled, 3, 0).astype(np.uint8)
    labels[artery] = 1
    labels[vein] = 2
    return labels


def av_legend() -> list[dict[str, object]]:
    """The encoding as data, for legend files: one ``{"index", "name", "color"}`` per class.

    Example
    -------
    >>> av_legend()[1]
    {'index': 1, 'name': 'artery', 'color': [255, 0, 0]}
    """
    return [
        {"index": index, "name": name, "color": AV_RGB[index].tolist()}
        for index, name in enumerate(AV_CLASSES)
    ]


def folder_legend(*, fov: bool) -> dict[str, dict[str, object]]:
    """The ``legend.json`` of an export folder (``images/``, ``av/``, ``vessel/``, ``fov/``).

    Parameters
    ----------
    fov : bool
        Whether the folder holds ``fov/`` masks (approved-case exports do, synthetic sets not).

    Returns
    -------
    legend : dict
        Per folder: the file pattern, how pixel values encode labels and, for ``av``, each
        class's index, name and display colour.
    """
    legend: dict[str, dict[str, object]] = {
        "image": {"file": "images/<nnnnn>.png", "encoding": "8-bit RGB fundus photo"},
        "av": {
            "file": "av/<nnnnn>.png",
            "encoding": "class index: 8-bit grey PNG whose pixel value is the class",
            "classes": av_legend(),
        },
        "vessel": {"file": "vessel/<nnnnn>.png", "values": {"0": "background", "255": "vessel"}},
    }
    if fov:
        legend["fov"] = {
            "file": "fov/<nnnnn>.png",
            "values": {"0": "outside", "255": "field of view"},
        }
    return legend
