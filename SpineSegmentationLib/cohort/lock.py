"""One ``spineseg batch`` per output folder at a time: the batch lock.

Two batches into one folder would run the same cases at once and write over each other's files, and a case's
``case.json`` (whose output checksums protect a person's corrections) could be written by the wrong run. The driver
of a batch (the process that runs :func:`.batch.run_batch`, also with the Ray engine) holds the lock on
``OUTROOT`` from before it removes a killed run's temporary files until the summary is written:

- ``OUTROOT/.spineseg-batch.lock``: an operating-system file lock (``flock`` on POSIX), taken through the
  ``filelock`` library without waiting. The system releases it when its process ends in any way (SIGKILL, a
  crash). It makes reading the owner record and writing this batch's own (a killed batch's taken over) one step
  on a machine.
- ``OUTROOT/.spineseg-batch.owner.json``: who holds it (``pid``, the process's ``create_time``, ``host``,
  ``started`` in UTC, ``command``), created exclusively, so that two hosts whose shared file system does not pass
  file locks between them cannot both start either. A later batch names this run in its error; a record left by
  a run that ended without removing it (killed) is taken over, with a note on stderr, when it is from this host
  and its process is gone (the same rule as ``spineseg segment``'s staging folder,
  :func:`..outputs.staging.owner_alive`); a record from another host is refused, with how to remove it.

Both files are removed when the batch ends (normally, by an error or by Ctrl-C/SIGTERM), the record before the
file lock is released. Because the lock file is removed (a batch leaves nothing of its own in the folder), a
process that opened it just before its removal can still lock the removed file while a later one locks a new
file of that name: the file lock alone does not keep every second batch out, the exclusively created owner record
does (both such processes find no record, and only one of them can create it).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

LOCK_FILE = ".spineseg-batch.lock"
OWNER_RECORD = ".spineseg-batch.owner.json"
#: How long a batch that finds the file lock held waits for its holder's record (written just after the lock).
_RECORD_WAIT_S = 1.0
#: Characters of the other batch's command line that an error shows.
_COMMAND_SHOWN = 200

__all__ = ["BatchLock", "LOCK_FILE", "OWNER_RECORD", "refuse_if_locked"]


def _read_record(path: Path) -> tuple[Optional[dict], str]:
    """(the owner record, "") or (None, why not: "" when there is none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        record = json.loads(text)
    except ValueError as exc:
        return None, f"not a batch lock record ({exc})"
    if not isinstance(record, dict) or not {"pid", "host"} <= record.keys():
        return None, "not a batch lock record (no pid and host)"
    return record, ""


def _who(record: dict) -> str:
    started = record.get("started", "at an unknown time")
    command = str(record.get("command") or "")
    if len(command) > _COMMAND_SHOWN:  # e.g. cts/*.nii.gz expanded by the shell
        command = command[:_COMMAND_SHOWN] + " ..."
    who = f"pid {record.get('pid')} on host {record.get('host')}, started {started}"
    return f"{who}: {command}" if command else who


def _busy(output_root: Path, record: Optional[dict]) -> "OutputWriteError":
    from ..errors import OutputWriteError

    who = _who(record) if record else "a process that has not said who it is"
    return OutputWriteError(
        f"the output folder {output_root} is in use by another spineseg batch ({who}); two batches into one folder "
        "would run the same cases and write over each other's files. Wait for that batch to finish (or stop it), "
        "or choose another output folder with -o")


def _unchecked(output_root: Path, record: dict) -> "OutputWriteError":
    from ..errors import OutputWriteError

    here = socket.gethostname()
    where = "another host" if record.get("host") != here else "this host, whose process cannot be checked"
    return OutputWriteError(
        f"the output folder {output_root} is locked by a spineseg batch on {where} ({_who(record)}); whether it "
        f"still runs cannot be checked from {here}. Wait for it to finish, or choose another output folder with -o; "
        f"if that batch is over (finished, killed, or its machine went down), delete {output_root / OWNER_RECORD} "
        "and run the command again")


def _unreadable(output_root: Path, reason: str) -> "OutputWriteError":
    from ..errors import OutputWriteError

    return OutputWriteError(
        f"the output folder {output_root} holds a batch lock record {output_root / OWNER_RECORD} that cannot be read "
        f"({reason}); if no spineseg batch is running into this folder any more, delete that file and run the "
        "command again")


def _refusal(output_root: Path, record: Optional[dict], problem: str) -> "Optional[OutputWriteError]":
    """The error for an owner record found in ``output_root``, or None where it may be taken over (none, or left
    by a process of this host that is gone)."""
    from ..outputs.staging import owner_alive

    if record is None:
        return _unreadable(output_root, problem) if problem else None
    alive = owner_alive(record)
    if alive is False:
        return None
    if alive is True:
        return _busy(output_root, record)
    return _unchecked(output_root, record)  # another host's (or a process this host cannot inspect)


def refuse_if_locked(output_root: Path) -> None:
    """Raise at once when another batch's owner record in ``output_root`` says that it is in use (a live process
    of this host, or a batch of another host); reads only, creates nothing (a check before the inputs are
    searched, which can take minutes; :class:`BatchLock` is the lock).

    Raises:
        OutputWriteError: names the folder, the other batch (pid, host, start time) and the fix.
    """
    record, problem = _read_record(Path(output_root) / OWNER_RECORD)
    if problem:  # an unreadable record is judged under the file lock (BatchLock), where it cannot be a partial write
        return
    refusal = _refusal(Path(output_root), record, problem)
    if refusal is not None:
        raise refusal


class BatchLock:
    """Exclusive use of a batch output folder by this process, as a context manager (see the module docstring).

    Args:
        output_root: the batch's output folder; must exist.
        note: receives the line that says a dead batch's lock was taken over (default: stderr).

    Raises (on entering):
        OutputWriteError: another live batch uses ``output_root`` (its pid, host, start time and command named),
            a batch of another host holds its record (how to remove it named), the record cannot be read, or the
            lock files cannot be written.
    """

    def __init__(self, output_root: str | os.PathLike, note=None) -> None:
        self.output_root = Path(output_root)
        self.lock_path = self.output_root / LOCK_FILE
        self.record_path = self.output_root / OWNER_RECORD
        self._note = note or (lambda line: print(line, file=sys.stderr, flush=True))
        self._file_lock = None
        self._record: Optional[dict] = None

    def __enter__(self) -> "BatchLock":
        self.acquire()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        """Take the lock (see the class docstring for what it raises); nothing is left behind when it fails."""
        from filelock import FileLock, Timeout

        from ..outputs.staging import describe_write_error, owner_record

        file_lock = FileLock(str(self.lock_path), timeout=0)
        try:
            file_lock.acquire()
        except Timeout:
            raise _busy(self.output_root, self._holder_record()) from None
        except NotImplementedError:  # a file system without file locks (filelock 3): the owner record alone guards
            file_lock = None
        except OSError as exc:
            raise describe_write_error(exc, self.lock_path) from exc
        self._file_lock = file_lock
        try:
            record, problem = _read_record(self.record_path)
            refusal = _refusal(self.output_root, record, problem)
            if refusal is not None:
                raise refusal
            now = datetime.datetime.now(datetime.timezone.utc)
            mine = {**owner_record(), "started": now.strftime("%Y-%m-%d %H:%M:%S UTC"),
                    "command": " ".join(sys.argv)}
            if record is not None:
                self._replace_record(mine)
                self._record = mine
                self._note(f"spineseg batch: took over the lock on {self.output_root} left by a batch that is no "
                           f"longer running ({_who(record)}; killed or its machine restarted)")
            else:
                self._create_record(mine)
                self._record = mine
        except BaseException:  # e.g. Ctrl-C, or a note callback that raises: the record written here goes too
            self.release()
            raise

    def _holder_record(self) -> Optional[dict]:
        """The holder's record, waiting up to :data:`_RECORD_WAIT_S` for one that names a live process (the
        holder writes it just after taking the file lock)."""
        from ..outputs.staging import owner_alive

        deadline = time.monotonic() + _RECORD_WAIT_S
        while True:
            record, _ = _read_record(self.record_path)
            if (record is not None and owner_alive(record) is not False) or time.monotonic() > deadline:
                return record
            time.sleep(0.05)

    def _create_record(self, mine: dict) -> None:
        from ..outputs.staging import describe_write_error

        try:
            descriptor = os.open(self.record_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another host's batch made it since it was read (file locks not shared there)
            record, problem = _read_record(self.record_path)
            raise (_refusal(self.output_root, record, problem) or _busy(self.output_root, record)) from None
        except OSError as exc:
            raise describe_write_error(exc, self.record_path) from exc
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                json.dump(mine, stream)
        except BaseException as exc:  # also Ctrl-C: an empty record would refuse the next batch ("cannot be read")
            self.record_path.unlink()
            if isinstance(exc, OSError):
                raise describe_write_error(exc, self.record_path) from exc
            raise

    def _replace_record(self, mine: dict) -> None:
        from ..outputs.staging import describe_write_error
        from .report import write_text_atomically

        try:
            write_text_atomically(self.record_path, json.dumps(mine))
        except OSError as exc:
            raise describe_write_error(exc, self.record_path) from exc

    def _release_file_lock(self) -> None:
        if self._file_lock is None:
            return
        self._file_lock.release()
        self._file_lock = None
        # filelock removes the file on release on Windows (where removing it here raises PermissionError when
        # another batch has opened it meanwhile); it leaves it on POSIX, where a batch removes it, to leave nothing
        # of its own in the folder (see the module docstring for why that is safe).
        if sys.platform == "win32":
            return
        try:
            self.lock_path.unlink()
        except FileNotFoundError:  # removed by a batch that took the lock and ended meanwhile
            pass
        except PermissionError:
            # A folder that cannot be written (any more): the file stays, which is harmless (the lock is released and
            # the next batch locks the file again); the error to report there is that of the owner record or the run.
            pass

    def release(self) -> None:
        """Remove the owner record (when it is still this process's) and release the file lock, also when the
        record cannot be removed (its error is raised then). Safe to call twice.

        Raises:
            OSError: the owner record could not be removed (the next batch on this host takes it over, once this
                process has ended).
        """
        try:
            if self._record is not None:
                record, _ = _read_record(self.record_path)
                mine, self._record = self._record, None
                if record is not None and all(record.get(k) == mine[k] for k in ("pid", "create_time", "host")):
                    self.record_path.unlink()
        finally:
            self._release_file_lock()
