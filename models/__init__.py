"""Torch models angioflow trains itself: one subpackage per model, each built from a pydantic
config, with its training data, training loop and inference.

``vessel`` (vessel probability), ``hvgn`` (artery/vein labels), ``ddpm`` (A/V mask diffusion),
``pix2pixhd`` (mask to fundus photo), ``edsr`` (x4 super-resolution), ``inception`` (FID
features). Shared: ``checkpoints`` (weights on disk, verified by sha256), ``training``
(recipe base class, optimiser, EMA, resumable run folders), ``generation`` (synthetic sets:
DDPM -> pix2pixHD -> EDSR), ``export_dataset`` (a torch Dataset over exports and synthetic
sets). Shipped weights live in ``models/weights/<model>/`` as config.json + fp16 safetensors;
the recipes that made them in ``configs/``.
"""
