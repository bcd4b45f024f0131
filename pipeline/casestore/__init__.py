"""The case store: one HDF5 file per case, written atomically, with immutable review versions.

Layout of ``<store>/``::

    cases/<case_id>.h5      the case file (format ``angioflow-case``, see docs/formats.md)
    cases/<case_id>.log     the case's failure messages (JSON lines, digest-chained)
    locks/<case_id>.lock    the per-case writer lock
    autosave/<case_id>/     reviewers' unsaved edits
    replaced/               case files (and logs) superseded by ``ingest --replace``

Layout of a case file::

    /                       attrs: format, format_version, case_id, patient_pseudonym, eye,
                            camera, acquired_year, source_sha256, created, software_version,
                            complete, modified, manifest, manifest_sha256
    /raw/fundus             (H, W, 3) uint8, gzip
    /raw/fa/000 ...         (h, w) uint8|uint16, gzip; attrs time_s, file
    /stages/<name>/<array>  stage outputs; group attrs params (JSON), software_version,
                            finished, seconds
    /reviews/<kind>/v0001   (H, W) uint8 label mask; attrs version, parent, editor, time,
                            note, sha256 (immutable once written); A/V versions also
                            vessel_version (the approved vessel version they label)
    /reviews/<kind>/approvals/a0001   attrs version, editor, time
    /reviews/<kind>/rejections/r0001  attrs version, editor, time, reason
    /events                 JSON lines of what each commit changed: ingested, stage outputs,
                            saves, approvals, rejections (format 2 files: errors too)

Every array dataset carries the sha256 of its bytes, checked on read. The root attribute
``manifest`` lists every object with a digest of its attributes (and of ``/events``), and
``manifest_sha256`` its own digest; opening a case checks the file against it. Every change of
a case file is copy-on-write: a new file is built, fsynced and renamed over the old one under
the case's lock, so a crash leaves the old file or the new one. A failed stage only appends to
the small log beside the case file (itself replaced atomically), never rewriting the raw frames.

The package is split by concern: :mod:`._file` (manifest, atomic files, lock, commits),
:mod:`.raw`, :mod:`.stages`, :mod:`.reviews`, :mod:`.events`, :mod:`.autosaves`, and
:mod:`.store`, the :class:`CaseStore` every caller uses.
"""

from . import records
from .records import *  # noqa: F403  (the records are the package's names, listed once there)
from .store import CaseStore

__all__ = ["CaseStore", *records.__all__]
