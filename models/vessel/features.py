"""Image feature vectors for realism metrics (Fréchet distance, KID, precision/recall).

angioflow ships its own feature network: the vessel CNN's encoder, whose features describe
vessel-scale texture and are meaningful for fundus photos. True Inception FID/KID needs the
Inception-v3 weights, which are never downloaded; see :mod:`models.inception`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from angioflow.models.vessel.data import rescale_to_fov
from angioflow.models.vessel.infer import DEFAULT_WEIGHTS, VesselSegmenter
from angioflow.models.vessel.net import VesselUNet
from angioflow.pipeline.preprocess import vessel_contrast

__all__ = ["VesselFeatureExtractor"]


@dataclass(frozen=True)
class VesselFeatureExtractor:
    """Mean and standard deviation, inside the field of view, of every encoder level of the
    vessel CNN: ``2 * sum(base_channels * 2**i)`` numbers per photo (992 for the shipped
    model).

    Example
    -------
    >>> extractor = VesselFeatureExtractor.load()  # doctest: +SKIP
    >>> features = extractor(photos, fovs)  # (N, 992)  # doctest: +SKIP
    """

    model: VesselUNet
    weights_sha256: str

    @classmethod
    def load(cls, folder: Path = DEFAULT_WEIGHTS) -> VesselFeatureExtractor:
        segmenter = VesselSegmenter.load(folder)
        return cls(segmenter.model, segmenter.weights_sha256)

    @property
    def dimension(self) -> int:
        config = self.model.config
        return 2 * sum(config.base_channels * 2**level for level in range(config.depth + 1))

    @torch.inference_mode()
    def features(self, photo: np.ndarray, fov: np.ndarray) -> np.ndarray:
        """Feature vector of one photo.

        Parameters
        ----------
        photo : (H, W, 3) uint8 RGB fundus photo
        fov : (H, W) bool field of view

        Returns
        -------
        (dimension,) float64 ndarray
        """
        diameter = self.model.config.fov_diameter_px
        resized, resized_fov, _ = rescale_to_fov(photo, fov, fov_diameter_px=diameter)
        channels = vessel_contrast(resized, modality="fundus", fov=resized_fov)[None]
        multiple = self.model.multiple
        pad_r, pad_c = -channels.shape[1] % multiple, -channels.shape[2] % multiple
        channels = np.pad(channels, ((0, 0), (0, pad_r), (0, pad_c)))
        region = torch.from_numpy(np.pad(resized_fov, ((0, pad_r), (0, pad_c))))[None, None]
        levels = self.model.encode(torch.from_numpy(channels)[None].float())
        vector = []
        for level in levels:
            inside = torch.nn.functional.adaptive_max_pool2d(region.float(), level.shape[-2:])
            weight = inside / inside.sum().clamp(min=1.0)
            mean = (level * weight).sum(dim=(-2, -1))
            variance = ((level - mean[..., None, None]) ** 2 * weight).sum(dim=(-2, -1))
            vector += [mean[0], variance[0].sqrt()]
        return torch.cat(vector).double().numpy()

    def __call__(self, photos: np.ndarray, fovs: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 photos and (N, H, W) fields of view -> (N, dimension)."""
        return np.stack([self.features(p, f) for p, f in zip(photos, fovs, strict=True)])
