"""FID features (Inception-v3 pool3) of RGB photos, from a weights file the user supplies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from angioflow.models.inception.net import FIDInceptionV3
from torch.nn import functional as F  # noqa: N812

__all__ = ["InceptionFeatureExtractor"]


class InceptionFeatureExtractor:
    """FID features of RGB photos from a user-supplied Inception weights file."""

    def __init__(self, model: FIDInceptionV3, batch_size: int = 16) -> None:
        self.model = model.eval()
        self.batch_size = batch_size

    @classmethod
    def load(cls, path: Path) -> InceptionFeatureExtractor:
        """Load a state dict with torchvision's Inception-v3 names (the classifier ``fc`` and
        ``AuxLogits`` layers, if present, are not needed and are skipped).

        Raises
        ------
        ValueError
            If the file is not such a state dict (names the missing layers and the fix).
        """
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{path.name} is not a state dict of Inception-v3 weights")
        model = FIDInceptionV3()
        wanted = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
        missing = sorted(wanted - set(state))
        if missing:
            raise ValueError(
                f"{path.name} lacks {len(missing)} Inception-v3 tensors (e.g. {missing[0]}): "
                "supply the FID Inception weights, pt_inception-2015-12-05-6726825d.pth"
            )
        model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
        return cls(model)

    @torch.inference_mode()
    def __call__(self, photos: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB -> (N, 2048) float64 pool3 features."""
        features = []
        for start in range(0, len(photos), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(photos[start : start + self.batch_size]))
            x = batch.permute(0, 3, 1, 2).float() / 255.0
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
            features.append(self.model(2 * x - 1).double().numpy())
        return np.concatenate(features)
