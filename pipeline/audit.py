"""Privacy audit: search outputs for raw patient identifiers and for image metadata.

What is searched for: the patient ids, names and birth dates found in the raw case folders
(``case.json``) and in an optional list of extra identifiers, written the ways dates and ids are
commonly written; and, in every PNG/JPEG/TIFF, any metadata beyond pixels (EXIF, PNG text
chunks, XMP, comments), since angioflow's outputs carry none. Every file under the given roots
is read as bytes (HDF5 attributes, dataset names and string data included, because h5py stores
them uncompressed), text files are decoded, and images are opened for their metadata.

Findings never repeat the identifier: they name the file, where in it, the kind of identifier
and the (safe) label of the raw case it belongs to.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from angioflow.pipeline.review import ORIGIN_KEYS
from PIL import Image

__all__ = ["Finding", "Identifier", "audit_paths", "identifiers_from_raw"]

_NAME_FIELDS = ("name", "patient_name", "first_name", "last_name", "given_name", "family_name")
_BIRTH_FIELDS = ("birth_date", "date_of_birth", "dob", "birthdate")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
_MIN_IDENTIFIER_CHARS = 4  # shorter strings match everywhere by chance
_MAX_CASE_JSON_BYTES = 1_000_000
# Decoder facts PIL reports in Image.info that say nothing about a person.
_TECHNICAL = {
    "dpi",
    "gamma",
    "transparency",
    "aspect",
    "interlace",
    "jfif",
    "jfif_version",
    "jfif_unit",
    "jfif_density",
    "progressive",
    "progression",
    "compression",
    "srgb",
    "adobe",
    "adobe_transform",
    "resolution",
    "bits",
}


@dataclass(frozen=True)
class Identifier:
    """Something that must not appear in any output."""

    value: str
    kind: str  # "patient id", "name", "birth date", "listed identifier"
    source: str  # safe label of where it came from


@dataclass(frozen=True)
class Finding:
    """One leak: ``path`` (as given under its root), ``where`` in the file, ``what`` leaked."""

    path: str
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what} ({self.where})"


def _date_spellings(value: str) -> list[str]:
    try:
        date = dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        return [value]
    return sorted(
        {
            value,
            date.isoformat(),
            date.strftime("%Y%m%d"),
            date.strftime("%d.%m.%Y"),
            date.strftime("%d/%m/%Y"),
            date.strftime("%m/%d/%Y"),
            date.strftime("%Y:%m:%d"),  # EXIF
        }
    )


def identifiers_from_raw(raw: Path, extra: Iterable[str] = ()) -> list[Identifier]:
    """Identifiers of every case folder under ``raw`` (its ``case.json``) plus ``extra``.

    A numeric patient id is searched for as its digits, an id with leading zeros also without
    them (:func:`pipeline.privacy.id_spellings`); letter case never matters. When a case.json
    does not parse, its patient id is still taken from the text where it can be found, and the
    folder name itself becomes an identifier: angioflow withholds such a folder's name (it may
    hold the id), so finding it in an output is a leak.
    """
    from angioflow.pipeline.privacy import id_spellings
    from angioflow.pipeline.raw_case import case_label, find_case_folders

    found: list[Identifier] = []
    for folder in find_case_folders(raw):
        label = f"raw case '{case_label(folder)}'"
        document = _case_document(folder)
        if document is None:
            text = _case_text(folder)
            ids = [m.group(1) or m.group(2) for m in _PATIENT_ID_TEXT.finditer(text)]
            found += [Identifier(s, "patient id", label) for i in ids for s in id_spellings(i)]
            found.append(Identifier(folder.name, "folder name of an unreadable case", label))
            continue
        patient_id = document.get("patient_id")
        if isinstance(patient_id, int) and not isinstance(patient_id, bool):
            patient_id = str(patient_id)
        if isinstance(patient_id, str):
            found += [Identifier(s, "patient id", label) for s in id_spellings(patient_id)]
        else:
            found.append(Identifier(folder.name, "folder name of an unreadable case", label))
        for field in _NAME_FIELDS:
            if isinstance(document.get(field), str):
                found.append(Identifier(document[field], "name", label))
        for field in _BIRTH_FIELDS:
            if isinstance(document.get(field), str):
                for spelling in _date_spellings(document[field]):
                    found.append(Identifier(spelling, "birth date", label))
    found += [Identifier(v, "listed identifier", "--identifiers file") for v in extra if v]
    return [i for i in found if len(i.value.strip()) >= _MIN_IDENTIFIER_CHARS]


# "patient_id": "..." or "patient_id": 123 in a case.json that does not parse as a whole.
_PATIENT_ID_TEXT = re.compile(r'"patient_id"\s*:\s*(?:"((?:[^"\\\n]|\\.){1,128})"|(\d{1,40}))')


def _case_text(folder: Path) -> str:
    path = folder / "case.json"
    try:
        if not path.is_file() or path.stat().st_size > _MAX_CASE_JSON_BYTES:
            return ""
        return path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return ""


def _case_document(folder: Path) -> dict | None:
    """The parsed case.json, or None when it is absent, not a regular file or not an object."""
    text = _case_text(folder)
    try:
        document = json.loads(text) if text else None
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _image_metadata(path: Path) -> list[str]:
    """Names of metadata blocks an image carries beyond its pixels."""
    try:
        with Image.open(path) as image:
            blocks = [f"EXIF ({len(image.getexif())} tags)"] if len(image.getexif()) else []
            # angioflow's own origin stamp (pseudonymous case id, mask kind, version) is not
            # metadata to strip; its bytes are still searched for identifiers like any others
            own = set(ORIGIN_KEYS)
            blocks += [
                f"metadata '{key}'" for key in image.info if key not in _TECHNICAL | own
            ]
            return blocks
    except OSError:
        return []


def _hdf5_text(path: Path) -> Iterator[tuple[str, bytes]]:
    """(location, bytes) of every attribute and every string or byte dataset of an HDF5 file
    (decompressed, which a byte scan of the file would miss)."""
    import h5py
    import numpy as np

    def as_bytes(value: object) -> bytes:
        if isinstance(value, bytes):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind in "OSU":
            return b"\n".join(as_bytes(v) for v in value.ravel())
        return str(value).encode("utf-8", "replace")

    try:
        with h5py.File(path, "r") as handle:
            found: list[tuple[str, bytes]] = []

            def visit(name: str, item: object) -> None:
                for key, value in item.attrs.items():  # type: ignore[attr-defined]
                    found.append((f"HDF5 attribute {name}@{key}", as_bytes(value)))
                if isinstance(item, h5py.Dataset) and item.dtype.kind in "OSU":
                    found.append((f"HDF5 dataset {name}", as_bytes(item[()])))

            for key, value in handle.attrs.items():
                found.append((f"HDF5 attribute /@{key}", as_bytes(value)))
            handle.visititems(visit)
            yield from found
    except OSError:
        return


def _files(roots: Iterable[Path], exclude: tuple[Path, ...]) -> Iterator[tuple[Path, Path]]:
    for root in roots:
        if root.is_file():
            yield root.parent, root
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                inside = any(path.resolve().is_relative_to(e) for e in exclude)
                if path.is_file() and not path.is_symlink() and not inside:
                    yield root, path


def audit_paths(
    roots: Iterable[Path], identifiers: list[Identifier], *, exclude: Iterable[Path] = ()
) -> list[Finding]:
    """Every finding in every file under ``roots`` (files or folders), except under
    ``exclude`` (the raw inputs themselves, which hold the identifiers by design).

    Each identifier is searched for in the file's bytes (case-insensitive, and in UTF-16 for
    files that store text that way) and, for images, the metadata is listed.
    """
    excluded = tuple(Path(e).resolve() for e in exclude)
    findings: list[Finding] = []
    needles = [  # lower-cased once; each file's content is lower-cased once too
        (identifier, spelling.lower())
        for identifier in identifiers
        for spelling in {
            identifier.value.encode("utf-8"),
            identifier.value.encode("utf-16-le"),
        }
    ]
    for root, path in _files(roots, excluded):
        shown = str(path.relative_to(root.parent)) if root != path.parent else str(path)
        try:
            data = path.read_bytes()
        except OSError as error:
            findings.append(Finding(shown, "unreadable", f"could not be checked: {error.strerror}"))
            continue
        places = [("file bytes", data)]
        if path.suffix.lower() in (".h5", ".hdf5"):
            places += list(_hdf5_text(path))
        reported = set()
        for where, original in places:
            content = original.lower()
            for identifier, needle in needles:
                if (identifier.kind, identifier.source) in reported:
                    continue
                offset = content.find(needle)
                if offset >= 0:
                    reported.add((identifier.kind, identifier.source))
                    place = f"byte {offset}" if where == "file bytes" else where
                    findings.append(
                        Finding(shown, place, f"{identifier.kind} of {identifier.source}")
                    )
        if path.suffix.lower() in _IMAGE_SUFFIXES:
            findings += [Finding(shown, block, "image metadata") for block in _image_metadata(path)]
    return findings
