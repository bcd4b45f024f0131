"""Torch models angioflow trains itself, their training loops and inference.

``vessel_unet`` (the residual U-Net), ``vessel_data`` (training images and the patch sampler),
``training`` (training loops), ``vessel_inference`` (whole-image vessel probability).
Shipped weights live in ``models/weights/<model>/`` as config.json + fp16 safetensors.
"""

__all__ = ["training", "vessel_data", "vessel_inference", "vessel_unet"]
