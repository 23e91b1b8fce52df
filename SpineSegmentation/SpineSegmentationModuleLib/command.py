"""The command line that runs the pipeline, and the progress lines it prints.

The pipeline runs in a separate process (a crash or a ``kill`` cannot take Slicer down, and Cancel is
immediate)::

    PythonSlicer -m SpineSegmentationLib.cli segment INPUT -o OUTDIR --device D --model M --progress json

With ``--progress json`` the CLI prints one JSON object per line on stdout,
``{"stage": str, "fraction": float in [0, 1], "vertebra": int or null, "message": str}``, and after success
``{"stage": "result", "output_dir": str, "message": str}``. Errors go to stderr (exit status 2).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

#: Device choices shown to the user -> the CLI's ``--device`` value.
DEVICES: dict[str, str] = {"auto": "auto", "GPU": "cuda", "CPU": "cpu"}

#: Name of the library package the CLI lives in.
LIBRARY_PACKAGE = "SpineSegmentationLib"

#: Stage name of the CLI's last line.
RESULT_STAGE = "result"


@dataclass(frozen=True)
class ProgressEvent:
    """One progress line of the CLI.

    Attributes:
        stage: pipeline stage ("localization", "traversal", ...) or "result" for the final line.
        fraction: overall progress in [0, 1].
        vertebra: number of the vertebra being segmented (1 = first found), or None.
        message: human-readable text.
        output_dir: the output folder (final "result" line only), else None.
    """

    stage: str
    fraction: float
    vertebra: Optional[int]
    message: str
    output_dir: Optional[str] = None

    def text(self) -> str:
        """Progress-bar text, e.g. ``"traversal: vertebra 3"``."""
        label = self.stage if self.vertebra is None else f"{self.stage}: vertebra {self.vertebra}"
        return f"{label} - {self.message}" if self.message else label


def parse_progress_line(line: str) -> Optional[ProgressEvent]:
    """Parse one line of the CLI's output.

    Args:
        line: one line of stdout/stderr text (trailing newline allowed).

    Returns:
        The event, or None when the line is not a progress object (log or error text, which the caller
        keeps for the error message).
    """
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str):
        return None
    stage = data["stage"]
    if stage == RESULT_STAGE:
        return ProgressEvent(stage, 1.0, None, str(data.get("message", "")), str(data.get("output_dir", "")))
    fraction = data.get("fraction")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool):
        return None
    vertebra = data.get("vertebra")
    if vertebra is not None and (not isinstance(vertebra, int) or isinstance(vertebra, bool)):
        return None
    return ProgressEvent(stage, min(1.0, max(0.0, float(fraction))), vertebra, str(data.get("message", "")))


def library_root(module_dir: Optional[Path] = None) -> Path:
    """Folder that holds the ``SpineSegmentationLib`` package.

    In the installed extension the package lies beside the module file (``qt-scripted-modules/``); in the
    source tree it lies one level up (repository root).

    Args:
        module_dir: folder of ``SpineSegmentation.py``; default: the parent of this package.

    Raises:
        ValueError: if the package is in neither place (a broken installation: reinstall the extension).
    """
    module_dir = Path(module_dir) if module_dir is not None else Path(__file__).resolve().parent.parent
    for candidate in (module_dir, module_dir.parent):
        if (candidate / LIBRARY_PACKAGE / "__init__.py").is_file():
            return candidate
    raise ValueError(
        f"the {LIBRARY_PACKAGE} package was found neither in {module_dir} nor in {module_dir.parent}; "
        "reinstall the SpineSegmentation extension"
    )


def default_model_dir(library_dir: Path) -> Path:
    """The shipped model folder for a library folder: ``<library_dir>/Resources/Models/spineseg-default``.

    Same place as ``SpineSegmentationLib.models.DEFAULT_MODEL_DIR`` (the library's parent folder), computed
    without importing the library (which imports torch).
    """
    return Path(library_dir) / "Resources" / "Models" / "spineseg-default"


def find_python() -> str:
    """The Python interpreter that runs the CLI: Slicer's ``PythonSlicer`` launcher when on the PATH
    (inside Slicer), else the current interpreter (batch use outside Slicer)."""
    return shutil.which("PythonSlicer") or sys.executable


def cli_command(
    python: str, module: str, subcommand: str, input_path: Path, output_dir: Path, device: str = "auto",
    model_dir: Optional[Path] = None,
) -> list[str]:
    """Argument list of ``python -m SpineSegmentationLib.<module> <subcommand> INPUT -o OUTDIR ...`` with JSON
    progress, ending when Slicer's end closes its standard input (``--exit-when-stdin-closes``); the one command
    builder of the module (segmentation and corrections).

    Args:
        python: interpreter (see :func:`find_python`).
        module: the library's command module, ``"cli"`` or ``"correction_cli"``.
        subcommand: ``"segment"``, ``"click"``, ``"rerun"``, ...
        input_path: the CT file written for the process (NRRD, LPS).
        output_dir: empty or new output folder.
        device: one of :data:`DEVICES`' keys ("auto", "GPU", "CPU") or values ("auto", "cuda", "cpu").
        model_dir: model folder; None = the library's shipped default model.

    Raises:
        ValueError: for an unknown device.
    """
    cli_device = DEVICES.get(device, device)
    if cli_device not in DEVICES.values():
        raise ValueError(f"unknown device {device!r}; use one of {sorted(DEVICES)}")
    args = [str(python), "-m", f"{LIBRARY_PACKAGE}.{module}", "--exit-when-stdin-closes", subcommand,
            str(input_path), "-o", str(output_dir), "--device", cli_device, "--progress", "json"]
    if model_dir is not None and str(model_dir) not in ("", "."):
        args += ["--model", str(model_dir)]
    return args


def segment_command(
    python: str, input_path: Path, output_dir: Path, device: str = "auto", model_dir: Optional[Path] = None
) -> list[str]:
    """Argument list of ``python -m SpineSegmentationLib.cli segment ...`` (see :func:`cli_command`).

    Raises:
        ValueError: for an unknown device.
    """
    return cli_command(python, "cli", "segment", input_path, output_dir, device, model_dir)


def progress_bar_format(event: ProgressEvent) -> str:
    """``QProgressBar.format`` text for ``event``: its text and the percentage (``%p``).

    ``QProgressBar`` replaces ``%p``, ``%v`` and ``%m`` and has no escape for a literal "%" (a "%%" would be shown
    as two signs), so the event's text is used as is, except that a "%" directly followed by p, v or m gets a
    space so that Qt does not replace it.
    """
    text = event.text()
    for code in "pvm":
        text = text.replace("%" + code, "% " + code)
    return text + "  (%p%)"


def process_environment(library_dir: Path, base: Optional[dict] = None) -> dict[str, str]:
    """Environment of the CLI process: ``base`` (default ``os.environ``) with ``library_dir`` first on
    ``PYTHONPATH``, unbuffered output (progress lines arrive as they are printed) and UTF-8 output, the encoding the
    runner reads it in (:class:`~.runner.ProcessRunner`): a child writes a pipe in the locale's encoding otherwise
    (cp1252 and the like on Windows), so an error naming a non-ASCII path came back garbled, and a character that
    encoding lacks, printed to stdout, ended the child."""
    env = dict(os.environ if base is None else base)
    paths = [str(library_dir)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env
