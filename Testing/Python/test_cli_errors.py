"""The error line of the ``spineseg`` commands for file-system errors: a missing input names the path and the fix, and
only a cause the error can have is hinted at (before, every FileNotFoundError ended in "; check the paths,
permissions and free disk space", also a missing training configuration or resume checkpoint)."""

from __future__ import annotations

import argparse
import errno
import json
import os

import pytest

from SpineSegmentationLib.cli import main, run_cli
from training_helpers import tiny_config

_NOISE = ("permission", "disk", "free space")


def _error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("spineseg: error: ")]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_missing_training_configuration_names_the_path_and_no_disk_or_permissions(tmp_path, capsys):
    missing = tmp_path / "none.json"
    assert main(["train", str(missing), "-o", str(tmp_path / "run")]) == 2
    line = _error_line(capsys)
    assert f"training configuration {missing} not found" in line and "Resources/TrainingConfigs" in line, line
    assert not any(word in line for word in _NOISE), line
    assert not (tmp_path / "run").exists()


def test_a_resume_without_checkpoint_names_it_and_the_fix_and_no_disk_or_permissions(tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(tmp_path, 2)))
    run = tmp_path / "run"
    assert main(["train", str(config), "-o", str(run), "--resume", "--device", "cpu"]) == 2
    line = _error_line(capsys)
    assert f"cannot resume: {run / 'checkpoint.pt'} does not exist" in line, line
    assert line.endswith("run the same command without --resume to start the run"), line
    assert not any(word in line for word in _NOISE), line


def _failing_command(exc: OSError) -> argparse.ArgumentParser:
    """A command whose run ends in ``exc``, as an operating-system call raises it (errno, strerror, no file name)."""
    parser = argparse.ArgumentParser(prog="spineseg")

    def fail(args):
        raise exc

    parser.set_defaults(func=fail)
    return parser


@pytest.mark.parametrize("number, hint, not_hinted", [
    (errno.ENOSPC, "the disk is full or a size/quota limit was reached", ("permission", "path")),
    (errno.EACCES, "check the permissions", ("disk", "path")),
    (errno.ENOENT, "check the path", ("disk", "permission")),
    (errno.EIO, None, ("disk", "permission", "path")),
])
def test_an_os_error_without_file_name_gets_only_the_hint_of_its_cause(number, hint, not_hinted, capsys):
    assert run_cli(_failing_command(OSError(number, os.strerror(number))), []) == 2
    line = _error_line(capsys)
    assert line.startswith(f"spineseg: error: {os.strerror(number)}"), line
    if hint is not None:
        assert hint in line, line
    assert not any(word in line.lower() for word in not_hinted), line


def test_a_full_disk_with_a_file_name_is_described_as_a_write_error(tmp_path, capsys):
    """Only a write fills the disk: the error names the file, the disk and the fix (-o)."""
    path = tmp_path / "labels.nii.gz"
    assert run_cli(_failing_command(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))), []) == 2
    line = _error_line(capsys)
    assert f"cannot write {path}" in line and "the disk is full" in line and "-o" in line, line


def test_an_os_error_of_a_read_names_the_file_and_is_not_called_a_write_error(tmp_path, capsys):
    """An input whose name the file system refuses (ENAMETOOLONG: a real error of a real look at the input, before
    anything is written) ended as "cannot write <input>: File name too long; choose another output folder with -o"
    (review 2026-12-07), and a file without read permission (EACCES, for a user who is not root) as "cannot write
    into <input>: Permission denied. Choose an output folder with -o". Named as a failed access, without a write
    hint."""
    name = tmp_path / ("x" * 300 + ".nii.gz")
    assert main(["segment", str(name), "-o", str(tmp_path / "out"), "--progress", "none"]) == 2
    assert _error_line(capsys) == f"spineseg: error: cannot access {name}: {os.strerror(errno.ENAMETOOLONG)}"
    assert not (tmp_path / "out").exists()


def test_a_permission_error_that_names_a_file_hints_at_reading_and_writing(tmp_path, capsys):
    """As an operating-system call raises it for an input without read permission (not reproducible as root)."""
    path = tmp_path / "ct.nrrd"
    assert run_cli(_failing_command(PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))), []) == 2
    line = _error_line(capsys)
    assert line == (f"spineseg: error: cannot access {path}: {os.strerror(errno.EACCES)}; check the permissions (read "
                    "permission for an input; for an output a writable file system with write permission, or another "
                    "folder with -o)"), line
