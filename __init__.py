"""angioflow: FA-curated retinal vessel and artery/vein ground truth, and synthetic fundus datasets
generated from it.

The package's layers, lowest first: :mod:`angioflow.pipeline` (arrays and files; no torch,
Prefect or napari), :mod:`angioflow.models` (torch), :mod:`angioflow.annotation_tools` (napari)
and :mod:`angioflow.flows` (Prefect flows and the ``angioflow`` command line).
"""

from importlib import metadata

try:
    __version__ = metadata.version("angioflow")
except metadata.PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0.0.0+unknown"
