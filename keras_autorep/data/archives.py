"""Read access to dataset archives (.tar.gz/.tgz/.tar) without extracting them.

Images are decoded straight from the archive (then cached as arrays by
`keras_autorep.data.sources`), so nothing from the archive is ever written
to disk. Member names are still checked: an absolute path or a ``..``
component rejects the whole archive, and only regular files are readable
(links are ignored).

Opening an archive reads it to its end once: the tar end-of-archive marker
must be there and the compressed stream must end with its checksum (gzip:
CRC-32 and length), so a truncated or damaged archive is refused instead of
yielding the members before the damage. A ``SHA256SUMS`` file beside the
archive that lists it is checked too (``check_sha256sums``).
"""

import hashlib
import lzma
import os
import posixpath
import tarfile
import zlib
from pathlib import Path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SUMS_FILENAME = "SHA256SUMS"
_TEXTS = ("wnids.txt", "val_annotations.txt")
# What the tar, gzip, bz2 and lzma readers raise on damaged or short data.
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error,
                lzma.LZMAError)


def is_archive(path):
    """Whether `path` names a supported archive file."""
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def archive_fingerprint(path):
    """Identity of an archive file: absolute path, size and mtime."""
    st = os.stat(path)
    return ["archive", str(Path(path).resolve()), st.st_size, st.st_mtime_ns]


def check_sha256sums(path):
    """Checks `path` against a ``SHA256SUMS`` file beside it, if one lists it.

    Returns:
        The SHA-256 hex digest when it was checked, else `None` (no sums file,
        or the archive is not listed in it).

    Raises:
        ValueError: the digest differs from the listed one.
    """
    path = Path(path)
    sums = path.parent / SUMS_FILENAME
    if not sums.is_file():
        return None
    expected = None
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1].lstrip("*") == path.name:
            expected = fields[0].lower()
    if expected is None:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ValueError(
            f"{path}: SHA-256 {digest.hexdigest()} differs from "
            f"{expected} in {sums}: the archive is damaged or not the listed "
            "one; fetch it again"
        )
    return expected


class ArchiveReader:
    """The regular files of a tar archive, listed in one pass.

    Args:
        path: archive path (any compression `tarfile` reads).

    Raises:
        ValueError: not a readable tar archive; truncated or damaged
            (checked to the end of the file); a member name is absolute or
            contains `..`.

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
            self._check_end()
        except _READ_ERRORS as e:
            self._tar.close()
            raise ValueError(
                f"{self.path}: damaged or incomplete archive "
                f"({type(e).__name__}: {e}); fetch it again") from None
        except BaseException:
            self._tar.close()
            raise
        self.paths = list(self._members)

    def _check_end(self):
        """Reads on from where the listing stopped to the end of the file.

        `tarfile` ends its listing quietly at a header it cannot read; only a
        full zero block followed by nothing but zeros is the real end. Reading
        the compressed stream to its end makes gzip (bz2, xz) check its CRC
        and length.
        """
        stream, end = self._tar.fileobj, self._tar.offset
        if stream.tell() != end + tarfile.BLOCKSIZE:
            raise tarfile.ReadError(
                f"the archive ends inside the header at byte {end:,}")
        while chunk := stream.read(1 << 20):
            if chunk.count(0) != len(chunk):
                raise tarfile.ReadError(
                    f"unreadable member header at byte {end:,}")

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
