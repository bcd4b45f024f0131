"""Artery/vein labels for every pixel of a vessel mask, at any image size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
from angioflow.models.checkpoints import SHIPPED_WEIGHTS, LoadedModel
from angioflow.models.hvgn.data import fundus_input
from angioflow.models.hvgn.net import HVGN, graph_batch
from angioflow.models.vessel.data import rescale_to_fov
from angioflow.models.vessel.infer import MIN_FOV_DIAMETER_PX
from angioflow.pipeline.preprocess import fov_diameter, fov_mask
from angioflow.pipeline.vessel_graph import segment_labels, vote_along_segments
from scipy import ndimage as ndi

__all__ = ["DEFAULT_AV_WEIGHTS", "AVLabeller"]

DEFAULT_AV_WEIGHTS = SHIPPED_WEIGHTS / "hvgn"


@dataclass(frozen=True)
class AVLabeller(LoadedModel):
    """A loaded HVGN plus the sha256 of its weights file (recorded with every output).

    Labelling runs with ``threads`` torch threads (set process-wide), for the reason given in
    :class:`models.vessel.VesselSegmenter`: float sums depend on the thread count,
    and a case must get the same labels in a dask worker as in the calling process.

    Example
    -------
    >>> labeller = AVLabeller.load()  # doctest: +SKIP
    >>> labels = av_labels(labeller.artery_probability(photo, vessel), vessel)  # doctest: +SKIP
    """

    model_class = HVGN
    default_weights = DEFAULT_AV_WEIGHTS

    model: HVGN

    def artery_probability(
        self,
        image: np.ndarray,
        vessel: np.ndarray,
        *,
        fov: np.ndarray | None = None,
        fa: np.ndarray | None = None,
        consistency: bool = True,
        flips: bool = True,
        head: Literal["graph", "cnn"] = "graph",
    ) -> np.ndarray:
        """Probability that each vessel pixel is an artery.

        Parameters
        ----------
        image : (H, W, 3) uint8 ndarray, the RGB fundus photo
        vessel : (H, W) bool ndarray, the (approved) vessel mask
        fov : (H, W) bool ndarray, optional; estimated from the photo when omitted
        fa : (H, W, fa_channels) float ndarray, optional
            Registered FA channels in fundus pixels (required when the model was trained with
            them, refused otherwise).
        consistency : bool
            Replace each pixel's probability by the confidence-weighted mean over its vessel
            segment (between junctions), which removes label flips along a vessel.
        flips : bool
            Average with the prediction for the mirrored photo and mask (test-time
            augmentation; twice the network time).
        head : {'graph', 'cnn'}
            Read the graph network's output (default) or the CNN's own per-pixel head, which
            shows what the graph adds.

        Returns
        -------
        (H, W) float32 ndarray in [0, 1]; 0 off the vessel mask.
        """
        config = self.model.config
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"the fundus photo must be (H, W, 3) RGB, got shape {image.shape}")
        if vessel.shape != image.shape[:2]:
            raise ValueError(
                f"the vessel mask is {vessel.shape[1]}x{vessel.shape[0]} but the photo is "
                f"{image.shape[1]}x{image.shape[0]}; pass the mask made for this photo"
            )
        vessel = vessel.astype(bool)
        if not vessel.any():
            return np.zeros(vessel.shape, np.float32)
        channels = 0 if fa is None else (fa.shape[2] if fa.ndim == 3 else 1)
        if channels != config.fa_channels:
            raise ValueError(
                f"these weights take {config.fa_channels} FA channels, got {channels}; "
                "use weights trained for the inputs this case has"
            )
        if fov is None:
            fov = fov_mask(image, modality="fundus")
        if not fov.any() or fov_diameter(fov) < MIN_FOV_DIAMETER_PX:
            raise ValueError(
                f"the photo's field of view is under {MIN_FOV_DIAMETER_PX} px wide: it shows no "
                "illuminated retina; check the exposure"
            )
        resized, small_fov, _ = rescale_to_fov(image, fov, fov_diameter_px=config.fov_diameter_px)
        size = small_fov.shape[::-1]
        x = fundus_input(resized, small_fov)
        if fa is not None:
            small_fa = cv2.resize(fa.astype(np.float32), size, interpolation=cv2.INTER_AREA)
            x = np.concatenate([x, small_fa.reshape(*small_fov.shape, -1)], axis=2)
        fraction = cv2.resize(vessel.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        small_vessel = fraction >= 0.25
        if not small_vessel.any():
            small_vessel = fraction >= fraction.max()
        small_probability = self._probability(x, small_vessel, head)
        if flips:
            mirrored = self._probability(x[:, ::-1], small_vessel[:, ::-1], head)[:, ::-1]
            small_probability = (small_probability + mirrored) / 2
        probability = _to_full_size(small_probability, small_vessel, vessel)
        if consistency:
            probability = vote_along_segments(probability, segment_labels(vessel))
        return np.where(vessel, probability, 0.0).astype(np.float32)

    @torch.inference_mode()
    def _probability(self, x: np.ndarray, vessel: np.ndarray, head: str) -> np.ndarray:
        multiple = self.model.multiple
        height, width = vessel.shape
        padded = np.zeros(
            (x.shape[2], -(-height // multiple) * multiple, -(-width // multiple) * multiple),
            np.float32,
        )
        padded[:, :height, :width] = x.transpose(2, 0, 1)
        graph = graph_batch([np.ascontiguousarray(vessel)], self.model.config)
        image = torch.from_numpy(padded)[None].contiguous(memory_format=torch.channels_last)
        graph_logits, pixel_logits = self.model(image, graph)
        logits = graph_logits if head == "graph" else pixel_logits
        probability = np.zeros(vessel.shape, np.float32)
        coords = graph.coords.numpy()
        probability[coords[:, 0], coords[:, 1]] = torch.softmax(logits, dim=1)[:, 0].numpy()
        return probability


def _to_full_size(
    small_probability: np.ndarray, small_vessel: np.ndarray, vessel: np.ndarray
) -> np.ndarray:
    """Give every full-size vessel pixel the probability of the nearest working-scale node."""
    if small_vessel.shape == vessel.shape:
        return small_probability
    _, (near_row, near_col) = ndi.distance_transform_edt(~small_vessel, return_indices=True)
    rows, cols = np.nonzero(vessel)
    factor_y = small_vessel.shape[0] / vessel.shape[0]
    factor_x = small_vessel.shape[1] / vessel.shape[1]
    small_rows = np.clip(((rows + 0.5) * factor_y).astype(np.int64), 0, small_vessel.shape[0] - 1)
    small_cols = np.clip(((cols + 0.5) * factor_x).astype(np.int64), 0, small_vessel.shape[1] - 1)
    probability = np.zeros(vessel.shape, np.float32)
    probability[rows, cols] = small_probability[
        near_row[small_rows, small_cols], near_col[small_rows, small_cols]
    ]
    return probability
