"""Framework-free processing: numpy, SciPy, SimpleITK, OpenCV and scikit-image only.

One concept per module: ``io`` (safe image decoding), ``raw_case`` (the raw case contract),
``privacy`` (keyed pseudonyms), ``casestore`` (the HDF5 case store), ``ingest`` (stage 1),
``phantom`` (synthetic exams with full ground truth), ``preprocess`` (FOV masks and the
modality-aware vessel contrast), ``metrics`` (segmentation scores), ``datasets`` (readers for
the public labelled datasets).
"""

__all__ = [
    "casestore",
    "datasets",
    "ingest",
    "io",
    "metrics",
    "phantom",
    "preprocess",
    "privacy",
    "raw_case",
]
