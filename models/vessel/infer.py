"""Vessel probability for whole images of any size: rescale, tile, blend, rescale back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from angioflow.models.checkpoints import SHIPPED_WEIGHTS, LoadedModel
from angioflow.models.vessel.data import rescale_to_fov
from angioflow.models.vessel.net import VesselUNet
from angioflow.pipeline.preprocess import Modality, fov_diameter, fov_mask, vessel_contrast

__all__ = ["DEFAULT_WEIGHTS", "MIN_FOV_DIAMETER_PX", "VesselSegmenter"]

DEFAULT_WEIGHTS = SHIPPED_WEIGHTS / "vessel"
# Below this the "field of view" is a speck, not a retina; rescaling it to the working scale
# would blow a small image up a hundredfold.
MIN_FOV_DIAMETER_PX = 64


def _ramp(size: int, overlap: int) -> np.ndarray:
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        edge = np.linspace(0.0, 1.0, overlap + 2, dtype=np.float32)[1:-1]
        ramp[:overlap], ramp[-overlap:] = edge, edge[::-1]
    return ramp


@dataclass(frozen=True)
class VesselSegmenter(LoadedModel):
    """A loaded vessel model plus the sha256 of its weights file (recorded with every output).

    Inference runs with ``threads`` torch threads (set process-wide, as SimpleITK's are for
    registration): float sums in the convolutions depend on the thread count, so without it
    a case curated in a dask worker differed by a few mask pixels from the same case curated
    in the test process.

    Example
    -------
    >>> segmenter = VesselSegmenter.load()  # doctest: +SKIP
    >>> probability = segmenter.segment(fundus, modality="fundus")  # doctest: +SKIP
    """

    model_class = VesselUNet
    default_weights = DEFAULT_WEIGHTS

    model: VesselUNet

    def segment(
        self,
        image: np.ndarray,
        *,
        modality: Modality,
        fov: np.ndarray | None = None,
        scale: float = 1.0,
        tile: int = 1024,
        overlap: int = 32,
        flips: bool = True,
    ) -> np.ndarray:
        """Vessel probability of a fundus photo or an FA frame.

        Parameters
        ----------
        image : (H, W, 3) uint8 RGB fundus photo or (H, W) uint8/uint16 FA frame
        modality : {'fundus', 'fa'}
        fov : (H, W) bool ndarray, optional
            Field of view; estimated when omitted. Probability is 0 outside it.
        scale : float
            Run the network at ``scale`` times its working scale (>1 resolves finer vessels,
            slower).
        tile, overlap : int
            Tile side and overlap in pixels at the working scale; memory is bounded by the tile.
        flips : bool
            Average with the prediction of the mirrored image (test-time augmentation).

        Returns
        -------
        probability : (H, W) float32 ndarray in [0, 1]

        Raises
        ------
        ValueError
            If ``scale`` is not positive or the field of view is under 64 px wide.
        """
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if fov is None:
            fov = fov_mask(image, modality=modality)
        if not fov.any():
            return np.zeros(image.shape[:2], np.float32)
        if fov_diameter(fov) < MIN_FOV_DIAMETER_PX:
            raise ValueError(
                f"the field of view is only {fov_diameter(fov):.0f} px wide (at least "
                f"{MIN_FOV_DIAMETER_PX} px needed): the image shows no illuminated retina; "
                "check the exposure or pass the right --modality"
            )
        diameter = self.model.config.fov_diameter_px * scale
        resized, resized_fov, _ = rescale_to_fov(image, fov, fov_diameter_px=diameter)
        channels = vessel_contrast(resized, modality=modality, fov=resized_fov)[None]
        probability = self._tiled(channels, tile=tile, overlap=overlap, flips=flips)
        probability = cv2.resize(probability, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        return np.where(fov, np.clip(probability, 0.0, 1.0), 0.0).astype(np.float32)

    @torch.inference_mode()
    def _tiled(self, channels: np.ndarray, *, tile: int, overlap: int, flips: bool) -> np.ndarray:
        multiple = self.model.multiple
        height, width = channels.shape[-2:]
        tile_h = min(_round_up(tile, multiple), _round_up(height, multiple))
        tile_w = min(_round_up(tile, multiple), _round_up(width, multiple))
        padding = ((0, 0), (0, max(0, tile_h - height)), (0, max(0, tile_w - width)))
        padded = np.pad(channels, padding)
        total = np.zeros(padded.shape[-2:], np.float32)
        weights = np.zeros(padded.shape[-2:], np.float32)
        window = np.outer(_ramp(tile_h, overlap), _ramp(tile_w, overlap))
        for top in _starts(total.shape[0], tile_h, overlap):
            for left in _starts(total.shape[1], tile_w, overlap):
                block = torch.from_numpy(
                    np.ascontiguousarray(padded[:, top : top + tile_h, left : left + tile_w])
                )[None]
                probability = torch.sigmoid(self._run(block))[0, 0]
                if flips:  # average with the mirrored image's prediction
                    mirrored = torch.sigmoid(self._run(block.flip(-1)))[0, 0].flip(-1)
                    probability = (probability + mirrored) / 2
                total[top : top + tile_h, left : left + tile_w] += probability.numpy() * window
                weights[top : top + tile_h, left : left + tile_w] += window
        return (total / np.maximum(weights, 1e-6))[:height, :width]

    def _run(self, block: torch.Tensor) -> torch.Tensor:
        return self.model(block.contiguous(memory_format=torch.channels_last))


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile start positions covering ``length``; the last tile ends flush with the edge."""
    if length <= size:
        return [0]
    step = max(1, size - 2 * overlap)
    return [*range(0, length - size, step), length - size]
