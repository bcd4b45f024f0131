"""The napari layers of a case under review, created once per viewer and refilled case after
case: removing layers from a viewer holding a frame stack can crash vispy's drawing (napari 0.9,
Mesa), and reviewers keep the visibility and contrast they chose."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from angioflow.annotation_tools.session import ReviewImages
from angioflow.pipeline.casestore import MaskKind
from napari.utils.colormaps import DirectLabelColormap

__all__ = [
    "BRUSH_SIZE",
    "CONFLICT_LAYER",
    "LABEL_COLOURS",
    "MASK_LAYER",
    "PREVIOUS_LAYER",
    "REFERENCE_LAYER",
    "forget_undo_history",
    "label_colormap",
    "show_case",
]

MASK_LAYER = "mask"
PREVIOUS_LAYER = "previous version"
CONFLICT_LAYER = "merge conflicts"
REFERENCE_LAYER = "approved vessel mask"
BRUSH_SIZE = 3  # px: the calibre of most retinal vessels at fundus resolution

LABEL_COLOURS = {
    MaskKind.VESSEL: {1: "yellow"},
    MaskKind.AV: {1: "red", 2: "blue", 3: "white"},
}
_CONFLICT_COLOURS = DirectLabelColormap(
    color_dict={None: "transparent", 0: "transparent", 1: "magenta"}
)


def label_colormap(kind: MaskKind) -> DirectLabelColormap:
    """The colours of a mask kind's labels; background transparent."""
    colours: dict[int | None, str] = {None: "transparent", 0: "transparent"}
    colours.update(LABEL_COLOURS[kind])
    return DirectLabelColormap(color_dict=colours)


def show_case(
    viewer: Any,
    images: ReviewImages,
    mask: np.ndarray,
    previous: np.ndarray | None,
    kind: MaskKind,
    *,
    on_mask_created: Callable[[Any], None],
) -> Any:
    """Show a case's images, the approved vessel mask (gate 2's reference), the previous
    version and the mask under review, in paint mode; returns the mask layer.

    ``on_mask_created`` is called with the mask layer when the viewer gets one, once, to bind
    the review's keys and edit tracking to it.
    """
    blank = np.zeros(mask.shape, np.uint8)
    frames = images.fa_frames if images.fa_frames is not None else blank[None]
    _show_image(viewer, "fundus photo", images.fundus, rgb=True)
    _show_image(viewer, "FA frames", frames, visible=False, colormap="gray", blending="additive")
    for name, image in (("FA max", images.fa_max), ("FA mean", images.fa_mean)):
        _show_image(
            viewer,
            name,
            blank if image is None else image,
            visible=False,
            colormap="gray",
            blending="additive",
        )
    reference = images.vessel_reference
    _show_labels(
        viewer,
        REFERENCE_LAYER,
        blank if reference is None else reference,
        MaskKind.VESSEL,
        visible=False,
        opacity=0.4,
    )
    _show_labels(
        viewer, PREVIOUS_LAYER, blank if previous is None else previous, kind, visible=False
    )
    created = MASK_LAYER not in viewer.layers
    layer = _show_labels(viewer, MASK_LAYER, mask, kind, visible=True)
    if created:
        on_mask_created(layer)
    forget_undo_history(layer)  # the layer is reused: case A's strokes must not undo on B
    _show_labels(viewer, CONFLICT_LAYER, blank, MaskKind.VESSEL, visible=False)
    viewer.layers[CONFLICT_LAYER].colormap = _CONFLICT_COLOURS
    layer.brush_size = BRUSH_SIZE
    layer.selected_label = 1
    layer.mode = "paint"
    viewer.layers.selection.active = layer
    viewer.dims.current_step = (0,) * viewer.dims.ndim
    if viewer.dims.ndim == 3:
        viewer.dims.axis_labels = ("FA frame", "y", "x")
    viewer.reset_view()
    return layer


def _show_image(viewer: Any, name: str, data: np.ndarray, **defaults: Any) -> Any:
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
    else:
        layer = viewer.add_image(data, name=name, **defaults)
    if not defaults.get("rgb"):
        layer.contrast_limits = (0, 255)
    return layer


def _show_labels(
    viewer: Any,
    name: str,
    data: np.ndarray,
    kind: MaskKind,
    *,
    visible: bool,
    opacity: float = 0.7,
) -> Any:
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.colormap = label_colormap(kind)
        return layer
    return viewer.add_labels(
        data, name=name, colormap=label_colormap(kind), visible=visible, opacity=opacity
    )


def forget_undo_history(layer: Any) -> None:
    """Clear a Labels layer's undo/redo history.

    napari keeps a Labels layer's history when its data is replaced and has no public call to
    clear it; making the layer read-only does (``Labels._on_editable_changed``) and also leaves
    paint mode, which the caller sets again.
    """
    mode = layer.mode
    layer.editable = False
    layer.editable = True
    layer.mode = mode
