"""The torch thread count of one piece of work is given back to the caller afterwards (it is process-wide)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from SpineSegmentationLib.cli import run_cli
from SpineSegmentationLib.threads import torch_threads, usable_cores

REPO = Path(__file__).resolve().parents[2]


def test_the_block_runs_on_its_threads_and_the_callers_count_comes_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with torch_threads(1):
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with torch_threads(None):  # None leaves the setting alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_more_threads_than_cores_is_warned_about_naming_the_core_count():
    """More threads than cores share the cores and run slower; before, nothing said so."""
    cores = usable_cores()
    before = torch.get_num_threads()
    with pytest.warns(UserWarning, match=re.escape(_warning_text(cores + 1, cores))):
        with torch_threads(cores + 1):
            assert torch.get_num_threads() == cores + 1  # still done as asked
    assert torch.get_num_threads() == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as many threads as cores: no warning
        with torch_threads(cores):
            assert torch.get_num_threads() == cores


def _warning_text(asked: int, cores: int) -> str:
    return (f"{asked} CPU threads were asked for, more than the {cores} CPU core{'s' if cores != 1 else ''} this "
            "process can use: the threads "
            f"share cores and run slower, not faster. Ask for {cores} or fewer (--threads; 1 per job when running "
            "several jobs side by side).")


def test_the_thread_count_option_type_is_public_and_imports_neither_torch_nor_the_command_line():
    """spineseg batch took its --threads/--workers type from the command line's private ``cli._threads`` (audit
    2026-12-07): the library's cohort module imported the command line that imports it. The type is
    ``threads.thread_count``; importing the cohort module (and so building spineseg's parser) imports neither the
    command line nor torch."""
    from SpineSegmentationLib.threads import thread_count

    assert thread_count("4") == 4
    for text, message in (("0", "must be 1 or more, got 0"), ("-2", "must be 1 or more, got -2"),
                          ("two", "expected a whole number, got 'two'"), ("1.5", "expected a whole number")):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            thread_count(text)
    proc = subprocess.run([sys.executable, "-c", "import sys, SpineSegmentationLib.cohort.batch; "
                           "print(sorted(m for m in ('SpineSegmentationLib.cli', 'torch') if m in sys.modules))"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_command_line_shows_the_warning_on_stderr(tmp_path):
    """On the real command in a process of its own (Python's default warning filters): the run then stops at the
    missing model, after the threads were set. The warning is one ``spineseg: warning:`` line as the command's own
    warnings; before: ``.../cli.py:209: UserWarning: ...`` and the source line ``with torch_threads(...)``."""
    cores = usable_cores()
    proc = subprocess.run(
        [sys.executable, "-m", "SpineSegmentationLib.cli", "segment", str(tmp_path / "ct.nii.gz"), "--device", "cpu",
         "--threads", str(cores * 4), "--model", str(tmp_path / "nomodel"), "--progress", "none"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0] == f"spineseg: warning: {_warning_text(cores * 4, cores)}"
    assert "UserWarning" not in proc.stderr and "torch_threads" not in proc.stderr
    assert lines[-1].startswith("spineseg: error: no model at")


def test_a_warning_during_any_command_is_one_line_and_library_callers_see_it_as_before(capsys):
    """``run_cli`` (the main of spineseg and spineseg-correct) shows a UserWarning as ``PROG: warning: ...``, other
    categories as Python does; outside a command a library caller sees the warning as a warning again."""
    parser = argparse.ArgumentParser(prog="spineseg-correct")
    cores = usable_cores()

    def command(args):
        with torch_threads(cores + 1):
            warnings.warn("an old option", DeprecationWarning)
        return 0

    parser.set_defaults(func=command)
    with pytest.warns(DeprecationWarning, match="an old option") as shown:  # not a UserWarning: as Python shows it
        assert run_cli(parser, []) == 0
    assert [w.category for w in shown] == [DeprecationWarning]  # the UserWarning was printed instead
    err = capsys.readouterr().err
    assert err == f"spineseg-correct: warning: {_warning_text(cores + 1, cores)}\n"
    with pytest.warns(UserWarning, match=re.escape(_warning_text(cores + 1, cores))):
        with torch_threads(cores + 1):
            pass


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs a settable CPU affinity (Linux)")
def test_train_on_one_core_defaults_to_one_thread_without_a_warning(tmp_path):
    """``spineseg train`` without --threads on a process limited to one core: 1 thread and no warning (before: the
    default 2 warned about a count nobody chose); --threads 2 given there is still warned about. The run then stops
    at the missing configuration, after the threads were set."""
    def run(*options):
        return subprocess.run(
            [sys.executable, "-m", "SpineSegmentationLib.cli", "train", str(tmp_path / "missing.json"), "-o",
             str(tmp_path / "run"), "--device", "cpu", *options],
            capture_output=True, text=True, cwd=REPO, timeout=300,
            preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))

    default = run()
    assert default.returncode == 2, default.stderr
    assert "warning" not in default.stderr, default.stderr
    assert default.stderr.startswith("spineseg: error: ") and "missing.json" in default.stderr
    chosen = run("--threads", "2")
    assert chosen.stderr.startswith(f"spineseg: warning: {_warning_text(2, 1)}\n"), chosen.stderr


_ONE_CORE_TRAIN = """
import os, sys, warnings
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from SpineSegmentationLib.errors import SpineSegmentationError
from SpineSegmentationLib.training.trainer import train, training_threads
print("default", training_threads(None))
for asked in ({}, {"num_threads": 2}):  # the library's default, then an explicit count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:  # workers=-1 stops the run inside its thread setting, before anything is read or written
            train({}, sys.argv[1], device="cpu", workers=-1, progress=None, **asked)
        except SpineSegmentationError as error:
            assert "workers must be 0" in str(error), error
    print(asked.get("num_threads"), len(caught), *[str(w.message) for w in caught], sep="|")
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs a settable CPU affinity (Linux)")
def test_the_library_train_default_on_one_core_is_one_thread_without_a_warning(tmp_path):
    """``training.trainer.train`` called without ``num_threads`` (as a script or the Slicer module would) in a
    process limited to one core: the default resolves to 1 thread and warns about nothing (before: a fixed 2 that
    warned about a count the caller never chose); an explicit 2 there is still warned about."""
    result = subprocess.run([sys.executable, "-c", _ONE_CORE_TRAIN, str(tmp_path / "run")], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "default 1"
    assert lines[1] == "None|0", result.stdout
    assert lines[2] == f"2|1|{_warning_text(2, 1)}", result.stdout
    assert not (tmp_path / "run").exists()
