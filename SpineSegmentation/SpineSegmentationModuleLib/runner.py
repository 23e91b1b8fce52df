"""Run the pipeline's command in a child process, stream its output lines, kill it on Cancel.

Pure Python (``subprocess`` + a reader thread), so the same runner serves the GUI (polled from a Qt timer
on the main thread), batch scripts (``wait``) and tests outside Slicer. The logic receives a runner factory,
so another implementation (SlicerNNUnet style) can be injected.

Cancel kills the whole process tree: ``PythonSlicer`` is a launcher that starts the real interpreter as a
child, so killing the launcher alone would leave the computation running. On POSIX the child starts a new
session and the group is killed; on Windows ``taskkill /T`` ends the tree.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import threading
from collections import deque
from typing import Callable, Optional, Protocol, Sequence

#: Lines of output kept for error messages.
KEPT_LINES = 200
#: Seconds to wait for a killed process to be reaped.
KILL_WAIT_S = 10.0
#: Exit status reported for a process that was killed but not reaped within the wait (see :meth:`ProcessRunner.kill`).
KILLED_NOT_REAPED = -9

_DONE = object()


class Runner(Protocol):
    """What the logic needs from a process runner (see :class:`ProcessRunner`)."""

    def start(self, args: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None: ...

    def poll(self, on_line: Optional[Callable[[str], None]] = None) -> Optional[int]: ...

    def wait(self, on_line: Optional[Callable[[str], None]] = None) -> int: ...

    def kill(self) -> None: ...

    @property
    def running(self) -> bool: ...

    @property
    def last_lines(self) -> list[str]: ...


class ProcessRunner:
    """One child process whose stdout+stderr lines are delivered on the caller's thread.

    Example::

        runner = ProcessRunner()
        runner.start([sys.executable, "-c", "print('hello')"])
        code = runner.wait(on_line=print)   # prints "hello", returns 0
    """

    def __init__(self) -> None:
        self._proc: Optional[subprocess.Popen] = None
        self._queue: "queue.Queue" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._returncode: Optional[int] = None
        self._lines: deque = deque(maxlen=KEPT_LINES)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the exit status has been delivered by :meth:`poll`/:meth:`wait`."""
        return self._proc is not None and self._returncode is None

    @property
    def returncode(self) -> Optional[int]:
        """Exit status once finished (negative: killed by that signal on POSIX), else None."""
        return self._returncode

    @property
    def last_lines(self) -> list[str]:
        """The last :data:`KEPT_LINES` output lines (for error messages)."""
        return list(self._lines)

    def start(self, args: Sequence[str], env: Optional[dict] = None, cwd: Optional[str] = None) -> None:
        """Start ``args`` (program first) with stdout and stderr merged, text mode, UTF-8. Its standard input is a
        pipe that this process never writes to and that closes when this process ends, also in a crash (the
        library's command line stops then: ``--exit-when-stdin-closes``).

        Raises:
            RuntimeError: if this runner already runs a process.
            OSError: if the program cannot be started (e.g. not found).
        """
        if self.running:
            raise RuntimeError("this runner is already running a process; cancel it or wait for it first")
        kwargs: dict = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="replace", bufsize=1, env=env, cwd=cwd)
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True
        self._queue = queue.Queue()
        self._lines.clear()
        self._returncode = None
        self._proc = subprocess.Popen(list(args), **kwargs)
        self._thread = threading.Thread(target=self._read, args=(self._proc, self._queue), daemon=True)
        self._thread.start()

    @staticmethod
    def _read(proc: subprocess.Popen, out: "queue.Queue") -> None:
        for line in proc.stdout:
            out.put(line.rstrip("\r\n"))
        proc.stdout.close()
        code = proc.wait()
        proc.stdin.close()
        out.put((_DONE, code))

    def _deliver(self, item, on_line) -> Optional[int]:
        if isinstance(item, tuple) and item and item[0] is _DONE:
            self._returncode = item[1]
            return self._returncode
        self._lines.append(item)
        if on_line is not None:
            on_line(item)
        return None

    def poll(self, on_line: Optional[Callable[[str], None]] = None) -> Optional[int]:
        """Deliver the lines received so far to ``on_line``; never blocks.

        Returns:
            The exit status once the process has ended and all its lines were delivered, else None.
        """
        if self._proc is None:
            return None
        if self._returncode is not None:
            return self._returncode
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return None
            code = self._deliver(item, on_line)
            if code is not None:
                return code

    def wait(self, on_line: Optional[Callable[[str], None]] = None) -> int:
        """Block until the process ends, delivering its lines to ``on_line``; returns the exit status.

        Raises:
            RuntimeError: if no process was started.
        """
        if self._proc is None:
            raise RuntimeError("no process was started")
        while self._returncode is None:
            self._deliver(self._queue.get(), on_line)
        return self._returncode

    def kill(self, wait_s: float = KILL_WAIT_S) -> None:
        """Kill the process and all its children now (no-op when not running); returns once it is reaped.

        A process that is killed but not reaped within ``wait_s`` seconds (e.g. blocked in the kernel) is given
        up on with a warning: the runner then reports it as ended (exit status :data:`KILLED_NOT_REAPED`), so
        that the caller never stays in a "running" state because of it.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if os.name == "nt":
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, check=False)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # ended between poll() and killpg(): nothing left to kill
        try:
            self._returncode = proc.wait(timeout=wait_s)  # ended now, whatever lines are still queued
        except subprocess.TimeoutExpired:
            logging.warning("SpineSegmentation: process %d was killed but has not ended after %.0f s; "
                            "no longer waiting for it", proc.pid, wait_s)
            self._returncode = KILLED_NOT_REAPED
