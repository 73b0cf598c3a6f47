"""Scratch folders that the next command removes when their command died.

``scratch_folder(prefix)`` gives a new folder in ``scratch_root()``
(``<temp dir>/keras_autorep-<uid>``, or the ``root`` given) and removes it
when the block ends, ``Preempted`` (SIGTERM, SIGINT) included. A SIGKILL
runs no code, so each folder has a lock file beside it (``<name>.lock``,
``filelock``), held while the folder is in use; the operating system drops
it when the process ends, however it ends. Every ``scratch_folder`` call
first removes the folders whose lock it can take (``remove_abandoned``):
their command is gone.
"""

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_SUFFIX = ".lock"


def scratch_root():
    """The default folder of the scratch folders: one per user in the
    system's temporary folder."""
    return Path(tempfile.gettempdir()) / f"keras_autorep-{os.getuid()}"


def remove_abandoned(root):
    """Remove the scratch folders in ``root`` that no live process holds;
    returns their paths."""
    removed = []
    for lock_path in sorted(Path(root).glob(f"*{LOCK_SUFFIX}")):
        lock = FileLock(lock_path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # its command is running
        try:
            folder = lock_path.with_suffix("")
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            lock.release()
            lock_path.unlink(missing_ok=True)
    return removed


@contextlib.contextmanager
def scratch_folder(prefix, root=None):
    """A new, empty folder ``<root>/<prefix>-<pid>-<random>`` for the
    block (default root ``scratch_root()``), removed at its end; what
    killed commands left in ``root`` is removed first."""
    root = Path(root or scratch_root())
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_abandoned(root)
    folder = root / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    lock_path = folder.with_name(folder.name + LOCK_SUFFIX)
    lock = FileLock(lock_path)
    lock.acquire()
    try:
        folder.mkdir()
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        lock.release()
        lock_path.unlink(missing_ok=True)
