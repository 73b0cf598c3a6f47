"""Read access to dataset archives (.tar.gz/.tgz/.tar) without extracting them.

Images are decoded straight from the archive (then cached as arrays by
`keras_autorep.data.sources`), so nothing from the archive is ever written
to disk. Member names are still checked: an absolute path or a ``..``
component rejects the whole archive, and only regular files are readable
(links are ignored).
"""

import os
import posixpath
import tarfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_TEXTS = ("wnids.txt", "val_annotations.txt")


def is_archive(path):
    """Whether `path` names a supported archive file."""
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_fingerprint(path):
    """Identity of an archive file: absolute path, size and mtime."""
    st = os.stat(path)
    return ["archive", str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


class ArchiveReader:
    """The regular files of a tar archive, listed in one pass.

    Args:
        path: archive path (any compression `tarfile` reads).

    Raises:
        ValueError: not a readable tar archive, or a member name is absolute
            or contains `..`.

    Attributes:
        paths: member names of the regular files, in archive order.
    """

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._tar = tarfile.open(self.path, "r:*")
        except tarfile.TarError as e:
            raise ValueError(f"{self.path}: not a readable tar archive ({e})"
                             ) from None
        self._members = {}
        self._texts = {}
        try:
            for member in self._tar:  # one pass: names and small text files
                name = member.name.replace("\\", "/")
                if (name.startswith("/") or ".." in name.split("/")
                        or name[1:2] == ":"):
                    raise ValueError(
                        f"refusing to read {self.path}: unsafe member path "
                        f"{member.name!r}"
                    )
                if member.isfile():
                    self._members[member.name] = member
                    if posixpath.basename(member.name) in _TEXTS:
                        self._texts[member.name] = self.open(
                            member.name).read().decode("utf-8")
        except tarfile.TarError as e:
            self._tar.close()
            raise ValueError(
                f"{self.path}: corrupt tar archive ({e})") from None
        except BaseException:
            self._tar.close()
            raise
        self.paths = list(self._members)

    def read_text(self, name):
        """Text of a `wnids.txt` or `val_annotations.txt` member."""
        return self._texts[name]

    def open(self, name):
        """Binary file object of a member."""
        return self._tar.extractfile(self._members[name])

    def offset(self, name):
        """Position of a member in the archive (read in this order)."""
        return self._members[name].offset

    def close(self):
        self._tar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
