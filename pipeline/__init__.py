"""Framework-free processing: numpy, SimpleITK, OpenCV and scikit-image only.

One concept per module: ``io`` (safe image decoding), ``raw_case`` (the raw case contract),
``privacy`` (keyed pseudonyms), ``casestore`` (the HDF5 case store), ``ingest`` (stage 1),
``phantom`` (synthetic exams with full ground truth).
"""

__all__ = ["casestore", "ingest", "io", "phantom", "privacy", "raw_case"]
