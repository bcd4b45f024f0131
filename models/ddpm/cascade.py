"""The shipped mask generator: a cascade of a layout DDPM and a conditional up-sampler.

The layout model draws soft 64 px artery/vein maps (each pixel its vessel share); the up-sampler
draws the 256 px maps that agree with them (Ho et al., "Cascaded Diffusion Models", JMLR 2022).
Label masks at any output size, with each vessel's calibre read from the maps' sub-pixel mass,
come from :func:`pipeline.mask_structure.labels_from_soft_av`.

A cascade's weights folder holds two weights folders, ``layout/`` and ``upsampler/``
(:mod:`models.checkpoints`), trained from ``configs/ddpm64_layout.yaml`` and
``configs/ddpm256_upsampler.yaml``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from angioflow.models.checkpoints import SHIPPED_WEIGHTS, WEIGHTS_FILE, WeightsError
from angioflow.models.ddpm.net import MaskDDPM, Sampler, draw_conditions
from angioflow.models.ddpm.sample import sample_masks

__all__ = ["DEFAULT_MASK_WEIGHTS", "LAYOUT", "UPSAMPLER", "MaskCascade", "sample_cascade"]

DEFAULT_MASK_WEIGHTS = SHIPPED_WEIGHTS / "mask_cascade"
LAYOUT, UPSAMPLER = "layout", "upsampler"


@dataclass(frozen=True)
class MaskCascade:
    """A layout model and the up-sampler that enlarges its layouts.

    Raises
    ------
    ValueError
        If the up-sampler does not take the layout model's size.
    """

    layout: MaskDDPM
    upsampler: MaskDDPM

    def __post_init__(self) -> None:
        if self.layout.config.image_size != self.upsampler.config.layout_size:
            raise ValueError(
                f"the layout model draws {self.layout.config.image_size} px layouts, the "
                f"up-sampler takes {self.upsampler.config.layout_size} px"
            )

    @property
    def image_size(self) -> int:
        """Side (px) of the maps the cascade draws."""
        return self.upsampler.config.image_size

    @classmethod
    def load(cls, folder: Path) -> MaskCascade:
        """Load ``folder/layout`` and ``folder/upsampler`` (float32, eval mode).

        Raises
        ------
        WeightsError
            If a part is missing or damaged, or the two parts do not belong together.
        """
        layout, upsampler = MaskDDPM.load(folder / LAYOUT), MaskDDPM.load(folder / UPSAMPLER)
        try:
            return cls(layout, upsampler)
        except ValueError as error:
            raise WeightsError(
                f"{folder}: {error}; put a layout model and the up-sampler trained for its "
                "layouts in one cascade folder"
            ) from None

    def save(self, folder: Path) -> None:
        """Write both models' weights folders (fp16) under ``folder``."""
        self.layout.save(folder / LAYOUT)
        self.upsampler.save(folder / UPSAMPLER)

    def set_levels(self, n: int, seed: int) -> np.ndarray | None:
        """The (n,) int64 calibre levels of a set of ``n`` maps, drawn together in the training
        masks' proportions (:func:`draw_conditions`) so a set's mix of fine and coarse masks does
        not depend on its batches; None when the layout model is not calibre-conditioned."""
        if not self.layout.config.calibre_condition:
            return None
        return draw_conditions(self.layout.config, n, seed)

    @staticmethod
    def sha256(folder: Path) -> str:
        """One digest of a cascade folder's two weights files (layout's, then up-sampler's)."""
        digest = hashlib.sha256()
        for part in (LAYOUT, UPSAMPLER):
            digest.update((folder / part / WEIGHTS_FILE).read_bytes())
        return digest.hexdigest()


def sample_cascade(
    cascade: MaskCascade,
    n: int,
    *,
    sampler: Sampler = "dpm",
    steps: int = 20,
    seed: int = 0,
    layout_noise: int = 50,
    batch_size: int = 8,
    conditions: Sequence[int] | np.ndarray | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """``n`` maps from a cascade: layouts at the layout model's size, then the up-sampler's
    full-resolution maps that agree with them, seen through ``layout_noise`` steps of noise
    (conditioning augmentation; 50 was chosen on validation seeds, docs/models/ddpm.md).
    ``on_batch(count)`` follows the up-sampler's batches. A calibre-conditioned layout model
    draws layout i with calibre level ``conditions[i]``, by default levels drawn from its
    training masks' (:func:`models.ddpm.sample_masks`).

    Returns
    -------
    maps : (n, 2, S, S) float32 in [0, 1], S the up-sampler's size

    Raises
    ------
    WeightsError
        If the up-sampler has no more noise steps than ``layout_noise``.
    """
    timesteps = cascade.upsampler.config.timesteps
    if not 0 <= layout_noise < timesteps:
        # checked before the layouts are drawn: their minutes are not spent on a refusal
        raise WeightsError(
            f"the cascade's up-sampler has {timesteps} noise steps, too few to see its layouts "
            f"through {layout_noise}: use an up-sampler trained with more timesteps"
        )
    options = {"sampler": sampler, "steps": steps, "seed": seed, "batch_size": batch_size}
    layouts = sample_masks(cascade.layout, n, conditions=conditions, **options)
    return sample_masks(
        cascade.upsampler,
        n,
        layout=layouts,
        layout_noise=layout_noise,
        on_batch=on_batch,
        **options,
    )
