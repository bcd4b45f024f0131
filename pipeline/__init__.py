"""Framework-free processing: numpy, SciPy, SimpleITK, OpenCV and scikit-image only.

One concept per module: ``io`` (safe image decoding), ``raw_case`` (the raw case contract),
``case_json`` (validating a case's case.json), ``case_reader`` (checking and decoding a case),
``privacy`` (keyed pseudonyms), ``casestore`` (the HDF5 case store), ``ingest`` (stage 1),
``phantom`` (synthetic exams with full ground truth), ``preprocess`` (FOV masks and the
modality-aware vessel contrast), ``metrics`` (segmentation scores), ``datasets`` (readers for
the public labelled datasets), ``display`` (user-controlled text made safe to print),
``av_encoding`` (the one A/V class encoding), ``h5_formats`` (format stamps of the HDF5 files
angioflow writes), ``transform_files`` (registration transforms as ITK files), and the stage
modules of curation (``registration``, ``deformable``, ``curation``, ``curation_stages``).
"""

__all__ = [
    "audit",
    "av_encoding",
    "av_structure",
    "case_json",
    "case_reader",
    "casestore",
    "curation",
    "curation_stages",
    "datasets",
    "deformable",
    "display",
    "feature_distance",
    "h5_formats",
    "ingest",
    "io",
    "mask_structure",
    "metrics",
    "phantom",
    "preprocess",
    "privacy",
    "qc",
    "raw_case",
    "registration",
    "review",
    "splits",
    "study_stats",
    "transform_files",
    "vessel_graph",
]
