"""All outputs of a run appear together or not at all, and only one run writes into an output folder at a time.

:class:`OutputStaging` claims an output folder before the work starts and holds the claim until the outputs are
in place:

- **where the files are written first**: a *staging folder* made with ``mkdir``, which is atomic and exclusive
  on every file system, so it is also the lock: a second run that finds it refuses at once.
  When the output folder does not exist yet, the staging folder is beside it (``.<name>.spineseg-partial``) and
  is renamed to the output folder in one step. When the output folder exists (it may hold the user's other
  files), the staging folder is inside it (``.spineseg-partial``) and each finished file is renamed into place,
  with SIGINT/SIGTERM held back during the few renames (microseconds), so an interrupt never splits the set.
- **writability is checked before the work**: creating the staging folder and the owner file in it proves the
  folder can be written (read-only file system, missing permission).
- **the owner file** (``owner.json``: process id, its start time, host) lets a later run tell a folder left by a
  killed process (SIGKILL, power loss), which it removes, from a run still in progress, which it refuses.
- **on any failure or interrupt** the staging folder and any parent folders this run made are removed, so
  nothing partial is left; :meth:`OutputStaging.left_behind` says exactly what the output folder holds then.

Example::

    with OutputStaging("ct_spineseg") as staging:       # refuses now if another run writes there
        result = segment_spine(...)                     # minutes
        (staging.path / "labels.nii.gz").write_bytes(...)
        staging.commit(["labels.nii.gz", ...], overwrite=False)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import psutil

from ..errors import OutputExistsError, OutputWriteError

#: Name of the staging folder inside an existing output folder (hidden on Unix).
STAGING_NAME = ".spineseg-partial"
#: File in the staging folder naming the run that owns it.
OWNER_FILE = "owner.json"

#: ``errno`` values of an ``OSError`` whose cause is the disk: full, or a size or quota limit reached.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})
#: ``errno`` values whose cause is the permissions: no write permission, or a read-only file system.
NO_PERMISSION_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
#: ``errno`` values whose cause is the path: a folder on it missing, or a file where a folder should be.
MISSING_PATH_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})


def describe_write_error(exc: OSError, path: Path) -> OutputWriteError:
    """An :class:`OutputWriteError` that names the problem of ``exc`` (an ``OSError`` on ``path``) and the fix."""
    reason = exc.strerror or str(exc)
    if exc.errno in NO_SPACE_ERRNOS:
        free = _free_bytes(path)
        space = f" ({free / 2**20:.1f} MiB free there)" if free is not None else ""
        return OutputWriteError(
            f"cannot write {path}: {reason}: the disk is full or a size/quota limit was reached{space}. Free some "
            "space or choose an output folder on another disk with -o"
        )
    if exc.errno in NO_PERMISSION_ERRNOS | MISSING_PATH_ERRNOS:
        return OutputWriteError(
            f"cannot write into {path}: {reason}. Choose an output folder with -o that can be created and written "
            "(a writable file system, with write permission)"
        )
    return OutputWriteError(f"cannot write {path}: {reason}; choose another output folder with -o")


def _free_bytes(path: Path) -> Optional[int]:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (delivered on exit) while a few renames run, so that they all happen or none.

    Only POSIX can block signals; on Windows this does nothing (Ctrl-C is then delivered at once).
    """
    blockable = hasattr(signal, "pthread_sigmask")
    if blockable:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if blockable:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def owner_record() -> dict:
    """This process as the owner of a claim: ``pid``, ``create_time`` (seconds since the epoch, so that a reused
    pid is told apart) and ``host``."""
    me = psutil.Process()
    return {"pid": me.pid, "create_time": me.create_time(), "host": socket.gethostname()}


def owner_alive(owner: dict) -> Optional[bool]:
    """True: the owning process runs; False: it is gone; None: cannot tell (another host, unreadable)."""
    if owner.get("host") != socket.gethostname():
        return None
    try:
        return abs(psutil.Process(int(owner["pid"])).create_time() - float(owner["create_time"])) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (KeyError, TypeError, ValueError, psutil.Error):
        return None


class OutputStaging:
    """Exclusive claim on ``output_dir`` and the staging folder the outputs are written into first.

    Use as a context manager: entering claims the folder (raises at once when it cannot), leaving removes
    whatever is not committed. The claim is held by this process until the ``with`` block ends.

    Attributes:
        output_dir: the target folder.
        path: the staging folder (write the outputs here), set while the claim is held.
        committed: the outputs were moved into ``output_dir``.
    """

    def __init__(self, output_dir: str | os.PathLike) -> None:
        self.output_dir = Path(output_dir)
        self.path: Optional[Path] = None
        self.committed = False
        self._beside = False
        self._made_parents: list[Path] = []
        self._existed = False
        self._cleanup_problem = ""

    def __enter__(self) -> "OutputStaging":
        self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.release()
        return False

    def claim(self) -> None:
        """Create the staging folder (exclusive) with the owner file in it.

        Raises:
            OutputExistsError: ``output_dir`` is a file.
            OutputWriteError: another run is writing into ``output_dir``; the folder (or its parent) is not
                writable; the disk is full.
        """
        out = self.output_dir
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"output folder {out} is a file; choose another output folder with -o")
        self._existed = out.is_dir()
        self._beside = not self._existed
        staging = out.parent / f".{out.name}{STAGING_NAME}" if self._beside else out / STAGING_NAME
        try:
            self._make_parents(staging.parent)
            for attempt in range(2):
                try:
                    staging.mkdir()
                    break
                except FileExistsError:
                    if attempt or not self._remove_if_stale(staging):
                        raise self._busy(staging) from None
            self.path = staging
            (staging / OWNER_FILE).write_text(json.dumps(owner_record()), encoding="utf-8")
        except OSError as exc:
            self.release()
            raise describe_write_error(exc, staging.parent) from exc

    def _make_parents(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for parent in reversed(missing):
            parent.mkdir()
            self._made_parents.append(parent)

    def _remove_if_stale(self, staging: Path) -> bool:
        try:
            owner = json.loads((staging / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            owner = {}
        if owner_alive(owner) is False:
            shutil.rmtree(staging)
            return True
        return False

    def _busy(self, staging: Path) -> OutputWriteError:
        try:
            owner = json.loads((staging / OWNER_FILE).read_text(encoding="utf-8"))
            who = f"process {owner['pid']} on {owner['host']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "an unknown process"
        return OutputWriteError(
            f"another spineseg run ({who}) is writing into {self.output_dir} (its temporary folder {staging} "
            "exists). Wait for it to finish or choose another output folder with -o; if no run is active any "
            f"more, delete {staging}"
        )

    def check_free(self, names: Iterable[str], overwrite: bool) -> None:
        """Raise :class:`OutputExistsError` when a file of ``names`` exists in ``output_dir`` and not ``overwrite``."""
        if overwrite:
            return
        for name in names:
            target = self.output_dir / name
            if target.exists():
                raise OutputExistsError(
                    f"{target} already exists and would be overwritten; pass --overwrite (overwrite=True) to "
                    "replace it or choose another output folder with -o"
                )

    def commit(self, names: list[str], overwrite: bool, remove: Iterable[str] = ()) -> None:
        """Move the finished files ``names`` from the staging folder into ``output_dir``, all or none; with
        ``overwrite``, also delete the files ``remove`` from ``output_dir`` (outputs of an earlier run that this
        one replaces by nothing).

        Raises:
            OutputExistsError: an output appeared in ``output_dir`` meanwhile and ``overwrite`` is False.
            OutputWriteError: the renames fail (the staging folder is kept for :meth:`release` to remove).
        """
        if self.path is None:
            raise RuntimeError("commit() without a claimed staging folder")
        os.remove(self.path / OWNER_FILE)
        with signals_deferred():
            try:
                if self._beside and not self.output_dir.exists():
                    os.rename(self.path, self.output_dir)
                else:
                    self.check_free([*names, *remove], overwrite)
                    for name in names:
                        os.replace(self.path / name, self.output_dir / name)
                    for name in remove:
                        if (self.output_dir / name).exists():
                            os.remove(self.output_dir / name)
                    os.rmdir(self.path)
            except OSError as exc:
                raise describe_write_error(exc, self.output_dir) from exc
            self.path = None
            self.committed = True
            self._made_parents = []

    def release(self) -> None:
        """Remove the staging folder and the parent folders made for it, unless committed. Safe to call twice."""
        with signals_deferred():
            if self.path is not None and self.path.exists():
                try:
                    shutil.rmtree(self.path)
                except OSError as exc:  # reported by left_behind(), which the error messages include
                    self._cleanup_problem = f"; the temporary folder {self.path} could not be removed " \
                                            f"({exc.strerror or exc}): delete it"
            self.path = None
            for parent in reversed(self._made_parents):
                try:
                    parent.rmdir()
                except OSError:
                    break  # something else was put there meanwhile: keep it
            self._made_parents = []

    def left_behind(self) -> str:
        """What ``output_dir`` holds after the run stopped, in words (for the interrupt and error messages)."""
        if self.committed:
            return f"the outputs were complete and are in {self.output_dir}"
        if self._existed:
            return f"nothing was written: {self.output_dir} was left as it was before the run{self._cleanup_problem}"
        return f"nothing was written: {self.output_dir} was not created{self._cleanup_problem}"
