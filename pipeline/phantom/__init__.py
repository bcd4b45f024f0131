"""Synthetic retinal exams with complete ground truth.

The phantom grows anatomically plausible artery and vein trees from the optic disc, renders a
colour fundus photograph and a fluorescein angiography (FA) sequence with dye kinetics and known
eye motion, and keeps every truth the pipeline is scored on: vessel and A/V masks, calibre,
per-frame transforms, the FA-to-fundus transform and landmarks for target registration error.
``semi_synthetic_sequence`` turns a real image into a sequence with known motion instead.
"""

from ._angiogram import DyeTiming
from ._case import Landmarks, PhantomCase, PhantomConfig, generate_case
from ._semisynthetic import SyntheticSequence, semi_synthetic_sequence
from ._transforms import Deformation, FrameTransform, warp_to_reference
from ._tree import Anatomy, VesselSegment, VesselTree
from ._write import case_seed, read_transforms, write_case, write_phantom_set

__all__ = [
    "Anatomy",
    "Deformation",
    "DyeTiming",
    "FrameTransform",
    "Landmarks",
    "PhantomCase",
    "PhantomConfig",
    "SyntheticSequence",
    "VesselSegment",
    "VesselTree",
    "case_seed",
    "generate_case",
    "read_transforms",
    "semi_synthetic_sequence",
    "warp_to_reference",
    "write_case",
    "write_phantom_set",
]
