"""Format stamps of the HDF5 files angioflow writes, and their check.

Every such file carries two root attributes: ``format``, a name saying what the file is, and
``format_version``, an integer raised whenever the layout changes in a way an older reader would
misread. A reader refuses a file with no stamp, another format's stamp, or a newer version than
it knows, naming the file and the fix. The case store checks its own stamp (with the file's
``complete`` flag and sealed manifest, :mod:`pipeline.casestore`) and reads every older version.

=========================  ==================================  ============================
format                     written by                          layout documented in
=========================  ==================================  ============================
``angioflow-case``         ``angioflow ingest`` (case store)   :mod:`pipeline.casestore`
``angioflow-export``       ``angioflow export --out FILE.h5``  :mod:`flows.export`
``angioflow-synthetic``    ``angioflow generate``              :mod:`models.generation`
``angioflow-mask-set``     ``angioflow generate-masks``        :mod:`models.ddpm.sample`
=========================  ==================================  ============================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py

from .errors import AngioflowError

__all__ = ["CASE", "EXPORT", "MASK_SET", "SYNTHETIC_SET", "H5Format", "UnsupportedFileFormat"]


class UnsupportedFileFormat(AngioflowError, ValueError):
    """An HDF5 file is not the angioflow file a reader expects, or is newer than it reads."""


@dataclass(frozen=True)
class H5Format:
    """One kind of angioflow HDF5 file.

    Attributes
    ----------
    name : str
        Value of the ``format`` attribute.
    version : int
        Value of ``format_version`` this angioflow writes, and the newest it reads.
    description : str
        What the file is, for messages.
    command : str
        The command that writes it, for messages.
    """

    name: str
    version: int
    description: str
    command: str

    def stamp(self, handle: h5py.File) -> None:
        """Write ``format`` and ``format_version`` on the file's root."""
        handle.attrs["format"] = self.name
        handle.attrs["format_version"] = self.version

    def check(self, handle: h5py.File, path: Path) -> None:
        """Refuse a file that is not this format or is newer than this angioflow reads.

        Parameters
        ----------
        handle : h5py.File
            The open file.
        path : Path
            Its path, named in the message.

        Raises
        ------
        UnsupportedFileFormat
            With a one-line message naming the file and the fix.
        """
        found = handle.attrs.get("format")
        if found is None:
            raise UnsupportedFileFormat(
                f"{path}: has no 'format' attribute, so it is not {self.description} of this "
                f"angioflow (or predates format stamps); write it again with `{self.command}`"
            )
        found = found.decode() if isinstance(found, bytes) else str(found)
        if found != self.name:
            raise UnsupportedFileFormat(
                f"{path}: is a '{found}' file, not {self.description} ('{self.name}'); "
                f"pass a file written by `{self.command}`"
            )
        version = int(handle.attrs.get("format_version", 0))
        if version > self.version:
            raise UnsupportedFileFormat(
                f"{path}: has {self.name} format version {version}, newer than the "
                f"{self.version} this angioflow reads; upgrade angioflow"
            )
        if version < 1:
            raise UnsupportedFileFormat(
                f"{path}: has an invalid format_version {version}; write it again with "
                f"`{self.command}`"
            )


# Case file versions: 1 unsealed; 2 sealed by a manifest; 3 failure messages kept in the case's
# event log file beside it (so recording one never rewrites the case file), not in /events.
CASE = H5Format("angioflow-case", 3, "an angioflow case file", "angioflow ingest --replace")
EXPORT = H5Format("angioflow-export", 1, "an approved-case export", "angioflow export")
SYNTHETIC_SET = H5Format("angioflow-synthetic", 1, "a synthetic set", "angioflow generate")
MASK_SET = H5Format("angioflow-mask-set", 2, "a generated mask set", "angioflow generate-masks")
