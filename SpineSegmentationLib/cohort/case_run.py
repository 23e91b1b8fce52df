"""One case of a cohort: the per-case function both engines run (in-process or as a Ray task).

:func:`run_case` segments one CT into ``OUTROOT/<case_id>/`` and returns its record (a plain, picklable dict):

- the five outputs of ``spineseg segment`` (and ``segmentation.dcm`` for a DICOM series or with ``dicom_seg``),
  plus ``case.json``, the record of the run (schema below);
- the case is written into a temporary folder ``OUTROOT/.tmp-<case_id>-<random>.spineseg-batch/`` and renamed
  to ``OUTROOT/<case_id>/`` only when complete, so a crash never leaves a half-written case that looks finished;
  an earlier folder of the same case (made by this command: it holds ``case.json``) is replaced only then (moved
  to ``.old-<case_id>-<random>.spineseg-batch/`` and removed). A process killed meanwhile leaves at most such
  folders, which :func:`remove_leftovers` (the next batch) removes; no other names are touched;
- resume: when ``OUTROOT/<case_id>/case.json`` says the case finished (status ``done`` or ``no_spine``) with the
  same fingerprint (input checksum, model name/version/checksum, library version), records the run's warnings and
  every output is there, the case is not run again (``resumed`` = True) unless ``force``; its record is the
  earlier one with the case's identity (``image``, ``series_uid``, ``reference``) as given now;
- a failing case (unreadable or corrupt input, not a CT, out of memory, any error of the pipeline) is returned
  with status ``failed`` and its error; nothing of it is left in ``OUTROOT`` and an earlier finished folder of
  the case is kept. An earlier case folder holding a file the command did not write, or an output changed since it
  was written (its checksum differs from the one ``case.json`` records: e.g. a segmentation corrected in Slicer and
  saved over), is not replaced: the case fails and names the files. A full disk (or a file size or quota limit)
  is not the case's problem: its record says ``failed`` and has ``"disk_full": true``, and the batch stops there
  (every later case would fail the same way).

Record / ``case.json`` schema::

    {"case_id": str, "image": str, "series_uid": str | null, "reference": str | null,
     "status": "done" | "no_spine" | "failed", "error": str (empty unless failed; for no_spine the message),
     "seconds": float (wall time of the run, read + segment + write), "resumed": bool,
     "fingerprint": {"input_sha256": str, "model": {"name", "version", "sha256"}, "library_version": str},
     "vertebrae": [the vertebrae.json entries], "warnings": [the run's warnings, as in vertebrae.json],
     "outputs": {file name: SHA-256 of each output file as written (not in a failed case's record)}}

(``disk_full`` is only in the record of a case stopped by a full disk, never in a ``case.json``. A ``case.json``
written before the run's warnings were recorded has no ``warnings``: its case is run again, since
its summary row and tile would otherwise read "no warnings" for a run that may have warned.)

The model is loaded once per process (per Ray worker) and kept for the following cases.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..io import DETACHED_DATA_SUFFIXES, dicom_series_in_folder, image_suffix
from ..outputs import DicomSegNotWrittenError
from ..outputs.dicom_seg import DICOM_SEG_FILE
from ..outputs.staging import NO_SPACE_ERRNOS
from .cases import Case, system_file

#: Record file of a case, in its output folder.
CASE_RECORD = "case.json"
#: Ends the name of every temporary file and folder a batch makes in ``OUTROOT`` (see :func:`temporary_path`).
TEMPORARY_SUFFIX = ".spineseg-batch"
_LEFTOVER = re.compile(r"\.(tmp|old|new|probe)-.*-[0-9a-f]{8}" + re.escape(TEMPORARY_SUFFIX))
#: The folders that earlier versions left when killed: a case's temporary or replaced folder, and the staging
#: folder beside it.
_OLD_LEFTOVER = re.compile(r"\.(tmp|old)-.*-[0-9a-f]{8}|\.\.tmp-.*-[0-9a-f]{8}\.spineseg-partial")
#: Statuses of a case whose outputs are complete.
FINISHED = ("done", "no_spine")
_CHUNK = 1 << 20

__all__ = ["CASE_RECORD", "CaseOptions", "FINISHED", "TEMPORARY_SUFFIX", "case_record", "check_options",
           "finished_record", "fingerprint", "remove_leftovers", "run_case", "temporary_path"]


@dataclass(frozen=True)
class CaseOptions:
    """How every case of a batch is run (picklable: it travels to the Ray workers).

    Attributes:
        model: model folder (absolute path; None = the shipped model).
        device: "auto", "cpu" or "cuda".
        threads: PyTorch CPU threads per case (None = PyTorch's default).
        dicom_seg: also write ``segmentation.dcm`` for non-DICOM inputs.
        force: run cases again even when their outputs are complete and unchanged.
    """

    model: Optional[str] = None
    device: str = "auto"
    threads: Optional[int] = None
    dicom_seg: bool = False
    force: bool = False


def temporary_path(folder: Path, kind: str, name: str) -> Path:
    """``folder/.<kind>-<name>-<random>.spineseg-batch``: a temporary file or folder of a batch (``kind``: tmp, old,
    new or probe), a name :func:`remove_leftovers` knows as this command's."""
    return folder / f".{kind}-{name}-{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"


def remove_leftovers(output_root: Path) -> list[Path]:
    """Remove the temporary files and folders that a killed batch left in ``output_root`` (the names of
    :func:`temporary_path`, and the folders earlier versions left: ``.tmp-<case>-<8 hex digits>``, ``.old-...`` and
    ``..tmp-*.spineseg-partial``); other names, a person's own ``.tmp-notes`` folder too, are not touched. Returns
    what was removed."""
    removed = []
    for path in sorted(output_root.iterdir()):
        if _LEFTOVER.fullmatch(path.name) or (_OLD_LEFTOVER.fullmatch(path.name) and path.is_dir()):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            removed.append(path)
    return removed


def _update_file(digest, path: Path) -> None:
    digest.update(path.name.encode())
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)


def input_sha256(case: Case) -> str:
    """SHA-256 of the case's input: the file (with the data file of a detached ``.nhdr``/``.mhd`` header), or the
    slice files of the DICOM series in order (names and bytes). Raises OSError for an unreadable input."""
    digest = hashlib.sha256()
    if case.image.is_dir():
        series = dicom_series_in_folder(case.image)
        for name in series.get(case.series_uid if case.series_uid is not None else next(iter(series), ""), []):
            _update_file(digest, Path(name))
        return digest.hexdigest()
    _update_file(digest, case.image)
    suffix = image_suffix(case.image)
    stem = case.image.name[: -len(suffix)] if suffix else case.image.name
    for ending in DETACHED_DATA_SUFFIXES.get(suffix, ()):
        data = case.image.with_name(stem + ending)
        if data.is_file():
            _update_file(digest, data)
    return digest.hexdigest()


def model_fingerprint(model: Optional[str]) -> dict:
    """Name, version and SHA-256 of the model's ``model.json`` (which holds the weights' checksums).

    Raises:
        OSError, ValueError: the model folder has no readable model.json (load_model gives the full message)."""
    from ..models import DEFAULT_MODEL_DIR, MODEL_JSON  # imports torch: only when a batch runs

    meta_path = Path(model) if model else DEFAULT_MODEL_DIR
    if meta_path.name != MODEL_JSON:
        meta_path = meta_path / MODEL_JSON
    data = meta_path.read_bytes()
    meta = json.loads(data)
    return {"name": meta.get("name"), "version": meta.get("version"), "sha256": hashlib.sha256(data).hexdigest()}


def fingerprint(case: Case, options: CaseOptions) -> dict:
    """What decides whether a finished case is still up to date: input checksum, model, library version."""
    return {"input_sha256": input_sha256(case), "model": model_fingerprint(options.model),
            "library_version": __import__("SpineSegmentationLib").__version__}


@functools.lru_cache(maxsize=2)
def _loaded_model(model: Optional[str], device: str):
    """The model, loaded once per process (and per Ray worker) and reused for the following cases."""
    from ..models import load_model
    from ..pipeline import resolve_device

    return load_model(model, device=resolve_device(device))


def check_options(options: CaseOptions, here: bool = True, in_process: bool = True) -> None:
    """Check the model (and with ``here``, the device) once, before any case runs: a bad one would fail them all.

    ``here``: the cases run on this machine, so the device must be available here; else only the model is checked
    (on a cluster each node's device is its own). ``in_process``: they run in this process, which keeps the model
    loaded on the device for them; else it is loaded on the CPU only to check it (Ray workers load their own, and a
    copy held here would take GPU memory they need).

    Raises:
        ModelFileError: the model folder is missing or its files are not a valid model.
        DeviceError: the device is unknown, or not available here (e.g. ``cuda`` without a GPU).
    """
    from ..pipeline import resolve_device

    if here and in_process:
        _loaded_model(options.model, options.device)  # resolves the device; kept for this process's cases
        return
    if here:
        resolve_device(options.device)
    _loaded_model(options.model, "cpu")


def case_record(case: Case, **fields) -> dict:
    """A case's record (module docstring schema): ``failed`` with no outputs unless ``fields`` say otherwise."""
    record = {"case_id": case.case_id, "image": str(case.image), "series_uid": case.series_uid,
              "reference": str(case.reference) if case.reference else None,
              "status": "failed", "error": "", "seconds": 0.0, "resumed": False, "fingerprint": None,
              "vertebrae": [], "warnings": []}
    record.update(fields)
    return record


def finished_record(folder: Path, dicom_seg: bool) -> Optional[dict]:
    """The record (``case.json``, module docstring schema) of a finished case folder, else None.

    A case folder is finished when its ``case.json`` is a JSON object with status ``done`` or ``no_spine``
    (:data:`FINISHED`) that records the run's warnings, and every output of ``spineseg segment`` is there
    (``segmentation.dcm`` too where the status is ``done`` and ``dicom_seg`` is True). None also for a folder or a
    ``case.json`` that does not exist, and for a damaged ``case.json`` (not JSON): such a case is run again and its
    record rewritten. Whether the case is up to date (its fingerprint) is not checked here.

    Args:
        folder: the case's output folder, ``OUTROOT/<case_id>``.
        dicom_seg: whether the case's outputs include a DICOM SEG (a DICOM series case, or ``--dicom-seg``).

    Returns:
        The record as read (a dict), or None.

    Raises:
        OSError: ``case.json`` exists but cannot be read (e.g. no read permission).
    """
    from ..outputs import OUTPUT_FILES
    from ..outputs.dicom_seg import DICOM_SEG_FILE

    record_path = folder / CASE_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except ValueError:  # a damaged record proves nothing: the case is run again and the record rewritten
        return None
    complete = all((folder / name).is_file() for name in OUTPUT_FILES.values())
    if not isinstance(record, dict) or record.get("status") not in FINISHED or "warnings" not in record \
            or not complete:
        return None
    if dicom_seg and record["status"] == "done" and not (folder / DICOM_SEG_FILE).is_file():
        return None
    return record


def _own_files() -> tuple[str, ...]:
    """Names of the files this command writes into a case folder (the outputs, the DICOM SEG, ``case.json``)."""
    from ..outputs import OUTPUT_FILES
    from ..outputs.dicom_seg import DICOM_SEG_FILE

    return (*OUTPUT_FILES.values(), DICOM_SEG_FILE, CASE_RECORD)


def _output_checksums(folder: Path) -> dict:
    """SHA-256 of each output file in a case folder (``case.json`` excepted): recorded so that a later run can tell
    an output a person edited in place (e.g. a segmentation corrected in Slicer and saved over) from its own."""
    from ..models import file_sha256

    return {name: file_sha256(folder / name) for name in _own_files()
            if name != CASE_RECORD and (folder / name).is_file()}


def _edited_outputs(folder: Path) -> list[str]:
    """The outputs in ``folder`` whose bytes differ from the checksums its ``case.json`` records (none recorded,
    in a record written before they were: none found)."""
    from ..models import file_sha256

    try:
        recorded = json.loads((folder / CASE_RECORD).read_text(encoding="utf-8")).get("outputs")
    except (ValueError, AttributeError):  # a damaged record: nothing to compare with
        return []
    if not isinstance(recorded, dict):
        return []
    return sorted(name for name, digest in recorded.items()
                  if name in _own_files() and (folder / name).is_file() and file_sha256(folder / name) != digest)


def _move_into_place(temporary: Path, final: Path) -> None:
    """Rename the complete ``temporary`` folder to ``final``; an earlier case folder there is removed after, only
    when it holds nothing but this command's files, unchanged since they were written (else FileExistsError: the
    case is recorded as failed)."""
    old = None
    if final.exists():
        if not (final / CASE_RECORD).is_file():
            raise FileExistsError(
                f"{final} exists and was not made by spineseg batch (no {CASE_RECORD}); move it away or choose "
                "another output folder"
            )
        own = set(_own_files())
        others = sorted(path.name for path in final.iterdir() if path.name not in own and not system_file(path.name))
        if others:
            raise FileExistsError(
                f"{final} holds files spineseg batch did not write ({', '.join(others)}), and the case folder is "
                "replaced when the case runs again; move them away and run the batch again"
            )
        edited = _edited_outputs(final)
        if edited:
            raise FileExistsError(
                f"{final} holds outputs changed since spineseg batch wrote them ({', '.join(edited)}; edited, e.g. "
                "a segmentation corrected and saved over), and the case folder is replaced when the case runs "
                "again; move them out of the case folder and run the batch again"
            )
        old = temporary_path(final.parent, "old", final.name)
        os.replace(final, old)
    os.replace(temporary, final)
    if old is not None:
        shutil.rmtree(old)


def _segment_into(case: Case, options: CaseOptions, folder: Path) -> tuple[str, str, list, list]:
    """Read, segment and write one case into ``folder``: (status, message, vertebrae entries, warnings)."""
    from ..io import read_image
    from ..outputs import write_outputs
    from ..pipeline import segment_spine
    from ..threads import torch_threads

    image = read_image(case.image, case.series_uid if case.image.is_dir() else None)
    with torch_threads(options.threads):
        result = segment_spine(image, model=_loaded_model(options.model, options.device), device=options.device)
    if case.series_uid is not None:
        result.run_info["dicom_series_uid"] = case.series_uid  # the series segmented (and referenced by the SEG)
    write_outputs(result, image, folder, input_path=case.image, dicom_seg=options.dicom_seg)
    status = "done" if result.vertebrae else "no_spine"
    return (status, "" if result.vertebrae else result.message, [v.to_dict() for v in result.vertebrae],
            list(result.run_info.get("warnings", [])))


def _check_exists(image: Path) -> None:
    """Raises InputImageError naming the fix when the case's image file or DICOM folder does not exist (a wrong
    manifest path, a broken symlink): else the case would fail with a bare OS error."""
    from ..errors import InputImageError

    if image.exists():
        return
    what = f"is a symlink to {os.readlink(image)}, which does not exist" if image.is_symlink() else "does not exist"
    raise InputImageError(f"the image {image} {what}; correct the path (a manifest's relative paths are taken from "
                          "the CSV's folder) or the link, and run the batch again")


def _disk_full(exc: BaseException) -> bool:
    """``exc`` comes from a full disk or a size/quota limit (an ``OSError`` in its cause/context chain)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def run_case(case: Case, output_root: str | os.PathLike, options: CaseOptions) -> dict:
    """Segment one case into ``output_root/<case_id>/`` (or find it up to date) and return its record.

    Never raises for a problem of the case itself: the record says ``failed`` and gives the error; a full disk
    adds ``"disk_full": True`` (the batch stops). ``KeyboardInterrupt`` is not caught: the temporary folder is
    removed and the interrupt goes on.
    """
    start = time.perf_counter()
    final = Path(output_root) / case.case_id
    temporary = temporary_path(Path(output_root), "tmp", case.case_id)
    try:
        _check_exists(case.image)
        prints = fingerprint(case, options)
        earlier = None if options.force else finished_record(final, options.dicom_seg or case.image.is_dir())
        if earlier is not None and earlier.get("fingerprint") == prints:
            identity = case_record(case)
            return {**earlier, **{key: identity[key] for key in ("image", "series_uid", "reference")},
                    "resumed": True}
        temporary.mkdir()  # the outputs' staging folder goes inside it: one name to clean up after a kill
        status, message, vertebrae, warnings = _segment_into(case, options, temporary)
        record = case_record(case, status=status, error=message, seconds=round(time.perf_counter() - start, 2),
                             fingerprint=prints, vertebrae=vertebrae, warnings=warnings,
                             outputs=_output_checksums(temporary))
        (temporary / CASE_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        _move_into_place(temporary, final)
        return record
    except Exception as exc:  # noqa: BLE001 - recorded in the summary; one bad case must not stop the cohort
        extra = {"disk_full": True} if _disk_full(exc) else {}
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, DicomSegNotWrittenError):  # its outputs are in the temporary folder, removed below
            error = (f"{type(exc).__name__}: {DICOM_SEG_FILE} was not written: {exc.reason}; the case's other outputs "
                     "are not kept (a batch keeps finished cases only): run the batch again once that is mended")
        return case_record(case, error=error, seconds=round(time.perf_counter() - start, 2), **extra)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
