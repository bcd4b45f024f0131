"""A ``torch.utils.data.Dataset`` over angioflow's training data, so another ML user loads an
export or a synthetic set without writing a loader.

Sources (see docs/formats.md):

- an approved-case export HDF5 (``angioflow export --out FILE.h5``),
- an export folder or a synthetic set's folder copy, through its ``datalist.json``
  (``angioflow export --out DIR``, ``angioflow generate --export-folders DIR``),
- a synthetic set HDF5 (``angioflow generate --out FILE.h5``).

Every sample is a dict of tensors in one layout whatever the source, with A/V labels in the
class indices of :mod:`pipeline.av_encoding`.

Example
-------
>>> from torch.utils.data import DataLoader
>>> data = ExportDataset(Path("approved"), split="training")  # doctest: +SKIP
>>> sample = data[0]  # doctest: +SKIP
>>> sample["image"].shape, sample["av"].dtype  # doctest: +SKIP
(torch.Size([3, 384, 576]), torch.int64)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from angioflow.pipeline.h5_formats import EXPORT, SYNTHETIC_SET, UnsupportedFileFormat
from angioflow.pipeline.io import read_av_mask, read_image, read_mask
from angioflow.pipeline.splits import SPLITS
from torch.utils.data import Dataset

__all__ = ["ExportDataset"]

Split = Literal["training", "validation", "test"]
Sample = dict[str, Any]
_FOLDER_FORMATS = {"angioflow-export-folder": 1, "angioflow-synthetic-folder": 1}


class ExportDataset(Dataset):
    """Samples of an angioflow export or synthetic set.

    Parameters
    ----------
    source : Path
        An export or synthetic set HDF5 file, an export folder (holding ``datalist.json``) or
        the ``datalist.json`` itself.
    split : {'training', 'validation', 'test'}, optional
        Only the samples of this patient-level split; all samples when None. Synthetic sets
        hold training samples only.
    transform : callable, optional
        Applied to each sample dict (MONAI dictionary-transform style); returns the new dict.

    Shapes:
        - ``image``: (3, H, W) float32 in [0, 1], RGB
        - ``vessel``: (1, H, W) float32 in {0, 1}
        - ``av``: (H, W) int64 class indices (0 background, 1 artery, 2 vein, 3 crossing)
        - ``fov``: (H, W) bool, the field of view (synthetic sets: their centred disc)
        - ``id``: str, the pseudonymous case id, or ``<set file>:<index>`` for synthetic samples

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist.
    UnsupportedFileFormat
        If ``source`` is not an angioflow export or synthetic set, or is newer than this
        angioflow reads.
    ValueError
        If ``split`` is unknown, or asked of a synthetic set for other than training.
    """

    def __init__(
        self,
        source: Path,
        *,
        split: Split | None = None,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        source = Path(source)
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist; pass an export or synthetic set")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.source, self.split, self.transform = source, split, transform
        self._handle: h5py.File | None = None
        self._pid = -1
        if source.is_dir() or source.suffix.lower() == ".json":
            self._kind = "folder"
            self._items = _datalist_items(source, split)
        else:
            with h5py.File(source, "r") as handle:
                self._kind, self._items = _h5_items(handle, source, split)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self._items):
            raise IndexError(f"index {index} out of range for {len(self._items)} samples")
        item = self._items[index]
        if self._kind == "folder":
            arrays = _read_folder_item(item)
        elif self._kind == EXPORT.name:
            group = self._file()[item]
            arrays = {
                "id": str(group.attrs["case_id"]),
                "image": group["fundus"][()],
                "vessel": group["vessel"][()],
                "av": group["av"][()],
                "fov": group["fov"][()] > 0,
            }
        else:
            handle = self._file()
            arrays = {
                "id": f"{self.source.name}:{item}",
                "image": handle["images"][item],
                "vessel": handle["vessel"][item],
                "av": handle["av"][item],
            }
            arrays["fov"] = _disc(arrays["image"].shape[0])
        sample = _to_tensors(arrays)
        return self.transform(sample) if self.transform is not None else sample

    def _file(self) -> h5py.File:
        # One handle per process: h5py handles must not cross a DataLoader worker's fork.
        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.source, "r")
            self._pid = os.getpid()
        return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"], state["_pid"] = None, -1
        return state


def _h5_items(handle: h5py.File, path: Path, split: Split | None) -> tuple[str, list[Any]]:
    found = handle.attrs.get("format")
    if found == SYNTHETIC_SET.name:
        SYNTHETIC_SET.check(handle, path)
        if split not in (None, "training"):
            raise ValueError(
                f"{path}: a synthetic set holds training samples only; pass split='training' "
                "or None"
            )
        return SYNTHETIC_SET.name, list(range(len(handle["images"])))
    if found != EXPORT.name:
        raise UnsupportedFileFormat(
            f"{path}: format {found!r} is not an angioflow export or synthetic set; pass a file "
            "written by `angioflow export` or `angioflow generate` (older files: write them again)"
        )
    EXPORT.check(handle, path)
    groups = sorted(handle)
    if split is not None:
        groups = [name for name in groups if handle[name].attrs["split"] == split]
    return EXPORT.name, groups


def _datalist_items(source: Path, split: Split | None) -> list[dict[str, Any]]:
    path = source / "datalist.json" if source.is_dir() else source
    if not path.is_file():
        raise FileNotFoundError(
            f"{source} holds no datalist.json; pass a folder written by `angioflow export --out "
            "DIR` or `angioflow generate --export-folders DIR`"
        )
    document = json.loads(path.read_text())
    found = document.get("format")
    if found not in _FOLDER_FORMATS:
        raise UnsupportedFileFormat(
            f"{path}: format {found!r} is not an angioflow export or synthetic folder "
            f"({', '.join(_FOLDER_FORMATS)}); write it with `angioflow export --out DIR`"
        )
    if int(document.get("format_version", 0)) > _FOLDER_FORMATS[found]:
        raise UnsupportedFileFormat(
            f"{path}: has {found} format version {document['format_version']}, newer than the "
            f"{_FOLDER_FORMATS[found]} this angioflow reads; upgrade angioflow"
        )
    names = SPLITS if split is None else (split,)
    return [{**entry, "_root": path.parent} for name in names for entry in document.get(name, [])]


def _read_folder_item(item: dict[str, Any]) -> dict[str, Any]:
    root: Path = item["_root"]
    image = read_image(root / item["image"])
    arrays = {
        "id": item.get("case_id", item["image"]),
        "image": image,
        "vessel": read_mask(root / item["vessel"]) > 0,
        "av": read_av_mask(root / item["label"]),
    }
    arrays["fov"] = read_mask(root / item["fov"]) > 0 if "fov" in item else _disc(image.shape[0])
    return arrays


def _disc(size: int) -> np.ndarray:
    from angioflow.models.generation import field_of_view

    return field_of_view(size) > 0


def _to_tensors(arrays: dict[str, Any]) -> Sample:
    image = arrays["image"]
    if image.ndim == 2:  # a greyscale photo: the three channels of a colour one
        image = np.repeat(image[..., None], 3, axis=-1)
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return {
        "id": arrays["id"],
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / scale,
        "vessel": torch.from_numpy((np.asarray(arrays["vessel"]) > 0)[None]).float(),
        "av": torch.from_numpy(np.asarray(arrays["av"]).astype(np.int64)),
        "fov": torch.from_numpy(np.asarray(arrays["fov"], dtype=bool)),
    }
