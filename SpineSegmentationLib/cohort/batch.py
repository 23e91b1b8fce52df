"""``spineseg batch``: segment a cohort, on this machine or on a Ray cluster, resumable, one folder per case.

Usage::

    spineseg batch cts/ more.nii.gz --manifest cases.csv -o cohort_out              # this machine
    spineseg batch dicom_tree/ -o cohort_out --engine ray --workers 2                  # local Ray instance
    spineseg batch /shared/cts -o /shared/out --engine ray --address auto --num-gpus 1 # existing Ray cluster

or from Python :func:`run_batch`. ``OUTROOT`` gets one folder per case (see :mod:`.case_run`), ``summary.csv`` and
``cohort_qc.html`` (see :mod:`.report`), and ``skipped.csv`` when inputs were skipped. One batch per output
folder at a time: the driver holds the folder's lock (:mod:`.lock`) while it runs, and a second batch into the
folder is refused at once, naming the other run; a lock left by a killed run of this host is taken over. A batch
removes the temporary files and folders (``.tmp-*``, ``.old-*``, ``.new-*``, ending in ``.spineseg-batch``, see
:func:`.case_run.remove_leftovers`) that a killed run left there. The checksums of the cohort files as written are
kept in ``.spineseg-batch.cohort.json`` (:data:`COHORT_RECORD`): a cohort file changed since (e.g. notes added to
``summary.csv`` in a spreadsheet) is refused before any case runs, never replaced.

Before any case runs, the model and the device (where the cases run on this machine) are checked and the output
folder is created and a probe file written and removed there, so that a wrong ``--model``, an unavailable
``--device`` or an unwritable folder is one usage error that leaves the output folder as it was, not a failure of
every case. A full disk while a case is written stops the batch as Ctrl-C does (finished cases are kept).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import math
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..threads import thread_count
from .case_run import CASE_RECORD, CaseOptions, check_options, finished_record, remove_leftovers, temporary_path
from .cases import Skipped, find_cases, skipped_counts
from .engines import RayEngine, RayTasks, check_ray, plan_ray_tasks, run_local
from .lock import OWNER_RECORD, BatchLock, refuse_if_locked
from .report import (FLAGS, QC_SHEET_FILE, SUMMARY_COLUMNS, SUMMARY_FILE, WARNING_SEPARATOR, qc_sheet_text,
                     summary_text, write_text_atomically)

SKIPPED_FILE = "skipped.csv"
#: The SHA-256 of each cohort file (``summary.csv``, ``cohort_qc.html``, ``skipped.csv``) as this command wrote it,
#: so that a later run replaces only its own: one a person changed (e.g. a column of notes added to summary.csv in a
#: spreadsheet) is refused, never replaced. ``{file name: [SHA-256, ...]}``: while a file is replaced, both the old
#: and the new version's, so that a kill in between leaves nothing refused.
COHORT_RECORD = ".spineseg-batch.cohort.json"
ENGINES = ("local", "ray")
#: The longest file or folder name, in bytes, of the common file systems (ext4, XFS, APFS, NTFS: 255 characters).
_NAME_MAX = 255
#: Highest exit status for failed cases (exit statuses above 125 mean a signal to the shell).
MAX_EXIT_FAILURES = 100

__all__ = ["BatchResult", "ENGINES", "add_batch_parser", "check_engine_settings", "cmd_batch", "run_batch"]


@dataclass
class BatchResult:
    """What :func:`run_batch` did: one record per case (see :mod:`.case_run`), what was skipped, the files."""

    records: list[dict]
    skipped: list[Skipped]
    summary: Path
    qc_sheet: Path

    @property
    def failed(self) -> int:
        return sum(1 for r in self.records if r["status"] == "failed")


#: The start of each cohort file as this command writes it: another file of that name is the user's.
_OWN_STARTS = {SUMMARY_FILE: ",".join(SUMMARY_COLUMNS), SKIPPED_FILE: "path,series_uid,reason",
               QC_SHEET_FILE: '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>spineseg cohort QC</title>'}


def _cohort_record(output_root: Path) -> dict:
    """The :data:`COHORT_RECORD` of ``output_root`` (``{}`` where there is none, or it is damaged: the cohort files
    are then told by their first line only, as before the record was kept)."""
    try:
        record = json.loads((output_root / COHORT_RECORD).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):  # none yet (or output_root is a file: refused when made)
        return {}
    except ValueError:  # damaged: nothing to compare with (the first-line check still applies)
        return {}
    return record if isinstance(record, dict) else {}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_cohort_files(output_root: Path) -> None:
    """Refuse an output folder holding a ``summary.csv``, ``cohort_qc.html`` or ``skipped.csv`` that this command
    did not write, or that was changed since (it rewrites its own at every run): a file :data:`COHORT_RECORD` lists
    must have a checksum recorded there, any other must start as this command's do.

    Raises:
        OutputExistsError: names the file and the fix.
    """
    from ..errors import OutputExistsError

    written = _cohort_record(output_root)
    for name, start in _OWN_STARTS.items():
        path = output_root / name
        if not path.exists():
            continue
        if not path.is_file():
            raise OutputExistsError(f"{path} is not a file written by spineseg batch and would be replaced; move it "
                                    "away or choose another output folder (-o)")
        if isinstance(written.get(name), list):
            if _sha256(path) not in written[name]:
                raise OutputExistsError(
                    f"{path} was changed since spineseg batch wrote it (e.g. notes added or a cell edited in a "
                    "spreadsheet) and would be replaced by this run's; move it away (or save your copy under another "
                    "name) and run again")
            continue
        with open(path, encoding="utf-8", errors="replace", newline="") as stream:
            head = stream.read(2 * len(start)).replace("\r\n", "\n")
        if not head.startswith(start):
            raise OutputExistsError(f"{path} was not written by spineseg batch and would be replaced; move it away "
                                    "or choose another output folder (-o)")


def _check_case_ids(cases) -> None:
    """Refuse a case id that cannot name its own case folder in ``OUTROOT``: ``.`` and ``..`` (the folder itself,
    its parent), any other starting with ``.`` (hidden, and the names of the batch's own lock and temporary files),
    the names of the cohort files (``summary.csv``, ... in any case: the case folder would take the file's place),
    and one too long for a folder name (its temporary folder's, :data:`_NAME_MAX` bytes at most).

    Raises:
        SpineSegmentationError: names the case id, its image and the fix.
    """
    from ..errors import SpineSegmentationError

    cohort_files = (SUMMARY_FILE, QC_SHEET_FILE, SKIPPED_FILE)
    longest = _NAME_MAX - len(temporary_path(Path(), "tmp", "").name.encode())  # the case's temporary folder's name
    for case in cases:
        if len(case.case_id.encode()) > longest:  # e.g. the relative path of a series deep in a DICOM tree
            why = (f"is {len(case.case_id.encode())} bytes long, longer than the {longest} a case folder's name can "
                   f"have (a name of {_NAME_MAX} bytes at most, with the batch's temporary name around it)")
            fix = "a shorter case_id"
        elif case.case_id.startswith("."):
            why, fix = "starts with '.' (a hidden folder, or the output folder itself or its parent)", _OTHER_ID
        elif case.case_id.casefold() in cohort_files:
            why, fix = f"is the name of a file of the cohort ({', '.join(cohort_files)})", _OTHER_ID
        else:
            continue
        raise SpineSegmentationError(f"the case id '{case.case_id}' (of {case.image}) {why}, and names the case's "
                                     f"output folder; give the case {fix} (in a --manifest, or by renaming the file)")


_OTHER_ID = "a case_id that starts with a letter or digit and is not one of those names"


def _check_dicom_seg_possible(cases, options: CaseOptions, output_root: Path) -> None:
    """Refuse, before any case runs, a batch whose cases to run need a DICOM SEG (every DICOM series case; every
    case with ``options.dicom_seg``; a case finished in ``output_root`` with its SEG is not run again unless
    ``options.force``) where the DICOM SEG cannot be written here (highdicom not installed: Python 3.9, e.g.
    Slicer 5.6/5.8's): each case would run to the end and then fail, its outputs not kept (``case_run``).

    Raises:
        SpineSegmentationError: names the cases' count, why, and the fix.
    """
    from ..errors import SpineSegmentationError
    from ..outputs.dicom_seg import dicom_libraries

    needing = [case for case in cases if (options.dicom_seg or case.image.is_dir()) and (
        options.force or finished_record(output_root / case.case_id, True) is None)]  # finished ones: not run again
    if not needing:
        return
    try:
        dicom_libraries()
    except SpineSegmentationError as error:
        why = "--dicom-seg asks for one" if options.dicom_seg else "a DICOM series case always gets one"
        fix = "run the batch without --dicom-seg, or with" if options.dicom_seg else "run the batch with"
        raise SpineSegmentationError(
            f"{len(needing)} of the {len(cases)} cases to run need{'s' if len(needing) == 1 else ''} a DICOM SEG "
            f"({why}, e.g. {needing[0].case_id}), which cannot be written here: {error}; {fix} a Python where "
            "highdicom can be installed") from error


def _prepare_output(output_root: Path) -> None:
    """Create ``output_root`` and write and remove a probe file there (before any case runs).

    Raises:
        OutputWriteError: the folder cannot be created or written (names the reason and the fix).
    """
    from ..outputs.staging import describe_write_error

    probe = temporary_path(output_root, "probe", "write")
    try:
        output_root.mkdir(parents=True, exist_ok=True)
        probe.write_text("spineseg batch checks that this folder can be written\n", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        if probe.exists():
            probe.unlink()
        raise describe_write_error(exc, output_root) from exc


def _write_cohort_file(output_root: Path, name: str, text: str) -> Path:
    """Write the cohort file ``output_root/name`` (atomically) and record its checksum in :data:`COHORT_RECORD`
    first, together with that of the file it replaces (checked to be this command's by :func:`_check_cohort_files`).
    Returns its path."""
    path = output_root / name
    record = _cohort_record(output_root)
    record[name] = list(dict.fromkeys([hashlib.sha256(text.encode("utf-8")).hexdigest()]
                                      + ([_sha256(path)] if path.is_file() else [])))
    write_text_atomically(output_root / COHORT_RECORD, json.dumps(record, indent=2) + "\n")
    return write_text_atomically(path, text)


def _write_skipped(skipped: Sequence[Skipped], output_root: Path) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["path", "series_uid", "reason"])
    writer.writerows([str(s.path), s.series_uid or "", s.reason] for s in skipped)
    _write_cohort_file(output_root, SKIPPED_FILE, text.getvalue())


def check_engine_settings(engine: str, address: Optional[str], workers: int, num_cpus: Optional[float],
                          num_gpus: Optional[float], options: CaseOptions) -> tuple[float, Optional[RayTasks]]:
    """Refuse engine settings that would be ignored or cannot work together (``spineseg batch`` and
    :func:`run_batch` alike), before anything runs (the inputs are not searched yet); returns ``num_cpus`` (None made
    1) and, with the Ray engine, the :class:`~.engines.RayTasks` planned (:func:`.engines.plan_ray_tasks`: the GPUs of
    each task, decided here for a local Ray instance from the GPUs PyTorch finds here where ``num_gpus`` is None),
    None with the local engine and on a cluster (``address``) with ``num_gpus`` None (the share of the cluster's GPUs
    is decided once connected, :class:`~.engines.RayEngine`).

    Args:
        engine, address, workers, num_cpus, num_gpus, options: as for :func:`run_batch` (None: not given).

    Raises:
        SpineSegmentationError: an unknown engine; with the local engine ``workers`` other than 1, an ``address``,
            ``num_cpus`` or ``num_gpus`` given (Ray settings: the cases would run as if they had not been given);
            ``workers`` other than 1 with an ``address`` (a cluster's resources decide how many cases run at once);
            ``num_cpus`` not above 0 or ``num_gpus`` below 0 or not finite; with the Ray engine a device that does
            not go with the GPUs of each task, given or (local instance) decided, or more GPUs asked of a local
            instance than PyTorch finds here (:func:`.engines.plan_ray_tasks`). Each names the fix.
    """
    from ..errors import SpineSegmentationError

    if engine not in ENGINES:
        raise SpineSegmentationError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "local" and workers != 1:
        raise SpineSegmentationError("the local engine runs one case at a time; for several at once use "
                                     f"--engine ray --workers {workers}")
    if engine == "local" and address:  # else the cases would run here, not on the cluster asked for
        raise SpineSegmentationError(f"--address {address} is a Ray cluster's, and the local engine runs the "
                                     "cases here; to run them on that cluster add --engine ray")
    if engine == "ray" and address and workers != 1:  # else ignored: a cluster runs as many as its resources allow
        raise SpineSegmentationError(
            f"--workers {workers} is the size of a local Ray instance, and with --address {address} the cases run on "
            "that cluster, as many at once as its free resources allow: leave --workers out, and set what each case "
            "takes with --num-cpus and --num-gpus")
    given = [f"--{name} {value:g}" for name, value in (("num-cpus", num_cpus), ("num-gpus", num_gpus))
             if value is not None]
    if engine == "local" and given:  # else ignored: the cases would run as if they had not been given
        raise SpineSegmentationError(
            f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} the resources of each Ray task, and the local "
            "engine runs the cases here, one after the other: give --threads N (CPU threads per case) and --device "
            "(cpu, cuda) for that, or add --engine ray")
    num_cpus = 1.0 if num_cpus is None else num_cpus
    if (not num_cpus > 0 or math.isinf(num_cpus)
            or num_gpus is not None and (not num_gpus >= 0 or math.isinf(num_gpus))):
        raise SpineSegmentationError(f"--num-cpus must be above 0 and --num-gpus 0 or more (finite numbers), got "
                                     f"{num_cpus} and {num_gpus}")
    if engine == "ray" and (not address or num_gpus is not None):
        return num_cpus, plan_ray_tasks(options, num_gpus, workers=workers, num_cpus=num_cpus,
                                        cluster_gpus=0 if address else None)
    return num_cpus, None


def run_batch(
    inputs: Sequence[str | Path],
    output_root: str | Path,
    options: CaseOptions = CaseOptions(),
    *,
    manifest: Optional[str | Path] = None,
    engine: str = "local",
    address: Optional[str] = None,
    workers: int = 1,
    num_cpus: Optional[float] = None,
    num_gpus: Optional[float] = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> BatchResult:
    """Segment every case of ``inputs`` / ``manifest`` into ``output_root`` and write the cohort summary.

    Args:
        inputs: image files, folders of them and DICOM trees (see :mod:`.cases`).
        output_root: output folder (created); must not be inside a DICOM series folder of the inputs.
        options: model, device, threads, DICOM SEG and ``force`` (redo finished cases) for every case.
        manifest: CSV with ``case_id,image[,reference][,series_uid]``.
        engine: "local" (one case after the other here) or "ray" (one Ray task per case, see :mod:`.engines`).
        address, workers, num_cpus, num_gpus: Ray settings (see :func:`.engines.run_ray`; None: 1 CPU per task, and
            a share of the GPUs there are, :func:`.engines.ray_gpus_per_task`); refused with the local engine,
            which runs the cases in this process, one after the other, on ``options.threads`` and ``options.device``
            (see :func:`check_engine_settings`).
        progress: show a progress bar over the cases on stderr (tqdm: current case, rate, ETA).
        report: receives the lines that tell what was skipped and failed (and notes, e.g. the GPUs given to each Ray
            task when ``num_gpus`` is None).

    Returns:
        :class:`BatchResult`; failed cases are in it, they do not raise.

    Raises:
        OutputWriteError: another batch uses ``output_root`` (a live process of this host, or a batch of another
            host whose lock record is there; see :mod:`.lock`): names it (pid, host, start time) and the fix, at
            once, before the inputs are searched or ``output_root`` is touched (or, where that batch started in
            between, before any case runs).
        SpineSegmentationError: no case found, bad inputs or manifest, duplicate case ids, a case id that
            cannot name a case folder (``.``, ``..``, starting with ``.``, ``summary.csv``, ...), engine settings
            that would not be used or do not go together (:func:`check_engine_settings`), more GPUs asked of a local
            Ray instance (``workers`` x ``num_gpus``) than PyTorch finds here (:func:`.engines.check_local_ray_gpus`),
            Ray missing or already started in this process for ``engine="ray"`` (:func:`.engines.check_ray`), a Ray
            cluster at ``address`` that cannot be reached or a CUDA ``device`` with no GPU there (on a local Ray
            instance checked with the settings, before the inputs are searched; :class:`.engines.RayEngine`), a
            cohort file in ``output_root`` that this command did not write
            (:class:`~SpineSegmentationLib.errors.OutputExistsError`),
            a missing or invalid model (``ModelFileError``) or a device not available here (``DeviceError``; not
            checked on a Ray cluster given by ``address``), a DICOM SEG that cases need and that cannot be written
            here (highdicom missing; likewise not checked on a cluster): all these before any case runs and before
            ``output_root`` is touched; ``output_root`` cannot be written (``OutputWriteError``, before any case
            runs); the disk became full while a case was written (``OutputWriteError``: the batch stops, the
            finished cases are kept, the summary is not updated).
    """
    num_cpus, ray_tasks = check_engine_settings(engine, address, workers, num_cpus, num_gpus, options)
    if engine == "ray":
        check_ray()  # before the inputs are searched; RayEngine checks again for callers of run_ray
    output_root = Path(output_root).resolve()
    refuse_if_locked(output_root)  # at once, before the inputs are searched (minutes for a large DICOM tree)
    cases, skipped = find_cases(inputs, manifest, exclude=output_root)
    _check_case_ids(cases)
    _check_cohort_files(output_root)
    check_options(options, here=engine == "local" or not address, in_process=engine == "local")
    if engine == "local" or not address:
        _check_dicom_seg_possible(cases, options, output_root)
    # started or connected before the output folder is made: an unreachable cluster leaves no folder behind
    ray_engine = (RayEngine(options, address=address, workers=workers, num_cpus=num_cpus, num_gpus=num_gpus,
                            tasks=ray_tasks) if engine == "ray" else None)
    with ray_engine or contextlib.nullcontext():  # Ray ended on any error, e.g. an output folder that cannot be made
        _prepare_output(output_root)
        with BatchLock(output_root):  # released on return, on any error and on Ctrl-C/SIGTERM
            return _run_cases(cases, skipped, output_root, options, ray_engine, progress=progress, report=report)


def _run_cases(cases, skipped: list[Skipped], output_root: Path, options: CaseOptions,
               ray_engine: Optional[RayEngine], *, progress: bool, report: Callable[[str], None]) -> BatchResult:
    """The part of :func:`run_batch` after the checks, run while this process holds the output folder's
    :class:`.lock.BatchLock`: remove a killed run's leftovers, run the cases (on ``ray_engine``, else here), write the
    cohort files."""
    from tqdm import tqdm

    from ..errors import OutputWriteError

    remove_leftovers(output_root)
    for s in skipped:
        report(f"skipped {s.path}" + (f" (series {s.series_uid!r})" if s.series_uid is not None else "")
               + f": {s.reason}")
    if skipped:
        _write_skipped(skipped, output_root)
    elif (output_root / SKIPPED_FILE).exists():  # an earlier run's (checked above to be this command's): not this one's
        (output_root / SKIPPED_FILE).unlink()
    if ray_engine is not None and ray_engine.note:
        report(ray_engine.note)
    bar = tqdm(total=len(cases), unit="scan", desc="cohort", disable=not progress, file=sys.stderr)
    if ray_engine is None:
        records_iter = run_local(cases, output_root, options,
                                 started=lambda case: bar.set_postfix_str(f"running {case.case_id}"))
    else:
        records_iter = ray_engine.run(cases, output_root)
    records = []
    try:
        for record in records_iter:
            records.append(record)
            note = " (up to date)" if record["resumed"] else ""
            bar.set_postfix_str(f"{record['case_id']}: {record['status']}{note}")
            bar.update()
            if record.get("disk_full"):
                raise OutputWriteError(
                    f"the disk is full (or a size/quota limit was reached) while writing case {record['case_id']} "
                    f"({record['error']}); the batch stopped after {len(records) - 1} of {len(cases)} cases: "
                    f"{_STOPPED}. Free some space (or choose an output folder on another disk with -o) and run the "
                    "same command again to resume")
            if record["status"] == "failed":
                with tqdm.external_write_mode():  # the bar is cleared and redrawn below: no line runs into it
                    report(f"case {record['case_id']} failed: {record['error']}")
    except KeyboardInterrupt as stop:
        from ..errors import Interrupted

        raise Interrupted.of(stop, f" after {len(records)} of {len(cases)} cases: {_STOPPED}. The same command "
                                   "resumes (finished cases are not run again)") from None
    finally:
        bar.close()
        records_iter.close()  # after a stop: ends a Ray instance and its pending tasks now
    result = BatchResult(records, skipped, _write_cohort_file(output_root, SUMMARY_FILE, summary_text(records)),
                         _write_cohort_file(output_root, QC_SHEET_FILE, qc_sheet_text(records, output_root)))
    counts = {status: sum(1 for r in records if r["status"] == status) for status in ("done", "no_spine", "failed")}
    resumed = sum(1 for r in records if r["resumed"])
    report(f"{len(records)} case{'' if len(records) == 1 else 's'}: {counts['done']} done, {counts['no_spine']} "
           f"without a spine, {counts['failed']} failed ({resumed} up to date, not run again); "
           + (f"skipped: {skipped_counts(skipped)} ({SKIPPED_FILE})" if skipped else "nothing skipped")
           + f". Summary: {result.summary}, QC sheet: {result.qc_sheet}")
    ran = {r["case_id"] for r in records}
    others = sorted(p.name for p in output_root.iterdir()
                    if p.name not in ran and p.is_dir() and (p / CASE_RECORD).is_file())
    if others:  # e.g. a batch of new scans into the folder of an earlier cohort
        report(f"{SUMMARY_FILE} and {QC_SHEET_FILE} list this run's {len(records)} case(s); {len(others)} other case "
               f"folder(s) in {output_root}, from earlier runs, are not in them ({', '.join(others[:5])}"
               f"{', ...' if len(others) > 5 else ''}): give all the inputs in one command to list them together "
               "(finished cases are not run again)")
    return result


#: What a stopped batch left in its output folder.
_STOPPED = (f"the finished cases' folders are complete, and the cases that were running left at most temporary "
            f"folders (.tmp-*.spineseg-batch), which the next run removes; {SUMMARY_FILE} and {QC_SHEET_FILE} are "
            "not updated (still the previous run's, if any)")


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def cmd_batch(args: argparse.Namespace) -> int:
    """``spineseg batch``: exit status = number of failed cases (at most :data:`MAX_EXIT_FAILURES`)."""
    from ..errors import SpineSegmentationError

    if not args.inputs and not args.manifest:
        raise SpineSegmentationError("give inputs (files, folders, DICOM trees) and/or --manifest CSV")
    threads = args.threads or (max(1, int(args.num_cpus or 1)) if args.engine == "ray" else None)
    options = CaseOptions(model=str(Path(args.model).resolve()) if args.model else None, device=args.device,
                          threads=threads, dicom_seg=args.dicom_seg, force=args.force)
    result = run_batch(args.inputs, args.output, options, manifest=args.manifest, engine=args.engine,
                       address=args.address, workers=args.workers, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                       progress=args.progress == "bar")
    return min(result.failed, MAX_EXIT_FAILURES)


def _help_lines(text: str, indent: int = 20, width: int = 110) -> str:
    """``text`` wrapped to ``width`` characters, every line indented by ``indent`` spaces (an epilog column)."""
    return textwrap.fill(text, width=width, initial_indent=" " * indent, subsequent_indent=" " * indent,
                         break_on_hyphens=False)


BATCH_EPILOG = f"""\
outputs (in OUTROOT):
  <case_id>/        the outputs of 'spineseg segment' (segmentation.dcm for DICOM series or --dicom-seg) and
                    case.json (status, error, warnings, time, vertebrae, input/model/output checksums, library
                    version); written to a temporary folder and renamed when complete
  {SUMMARY_FILE:<17} one row per vertebra per case (one row, vertebra columns empty, for a case without any):
{_help_lines(", ".join(SUMMARY_COLUMNS))}
                    (warnings: the run's warnings, joined by "{WARNING_SEPARATOR}"; model: its name and version;
                    centroid: RAS mm)
  {QC_SHEET_FILE:<17} one thumbnail per case, flagged cases first:
{_help_lines(", ".join(FLAGS) + "; a flagged tile says why and lists the run's warnings")}
  {SKIPPED_FILE:<17} inputs skipped (non-CT series, repeated files, spineseg output folders, folders that cannot
                    be listed), with the reason
A re-run skips cases whose outputs are complete and whose input, model and library are unchanged (--resume,
the default); --force runs them again. A case folder holding a file the command did not write, or an output
changed since it was written (a segmentation corrected and saved over), is not replaced: the case fails and names
the files. A {SUMMARY_FILE}, {QC_SHEET_FILE} or {SKIPPED_FILE} changed since the command wrote it (notes added in a
spreadsheet; checksums in OUTROOT/{COHORT_RECORD}) is not replaced either: the command stops before
any case runs. A failing case is recorded and the cohort goes on. A wrong --model, a --device not available here or
an output folder that cannot be written stops the command before any case runs; a full disk stops it as Ctrl-C
does (finished cases are kept; free space and run the same command to resume). One batch per OUTROOT at a time:
a second one is refused at once, naming the running one (pid, host, start time); the lock of a batch that was
killed on this host is taken over (note on stderr), one of another host is removed by deleting
OUTROOT/{OWNER_RECORD} once that batch is over.
exit status: the number of failed cases (at most {MAX_EXIT_FAILURES}); a batch stopped by an error ends with a line
'spineseg: error: ...' on stderr and exits 2 for what the user can fix (bad inputs or options, a folder in use, a
full disk), 1 for an internal error or out of memory; 130 after Ctrl-C, 143 after SIGTERM.
"""


def add_batch_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``spineseg batch`` on the ``spineseg`` command's subparsers."""
    batch = subparsers.add_parser(
        "batch", help="segment a cohort (folders, manifest CSV, DICOM tree), resumable, locally or with Ray",
        description="Segment every CT of a cohort into one folder per case, with a summary table and a QC sheet.",
        epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("inputs", nargs="*", help="image files (NIfTI, NRRD, MetaImage), folders of them, DICOM trees "
                                                 "(inputs, --manifest or both)")
    batch.add_argument("-o", "--output", required=True, metavar="OUTROOT",
                       help="output folder (one subfolder per case)")
    batch.add_argument("--manifest", help="CSV with a header case_id,image[,reference][,series_uid] (paths relative "
                                          "to the CSV; series_uid picks one series of a DICOM folder; reference, a "
                                          "reference label map, is listed in summary.csv, not scored: score a case "
                                          "with spineseg evaluate)")
    batch.add_argument("--engine", choices=ENGINES, default="local",
                       help="local: one case after the other here; ray: one Ray task per case "
                            "(pip install '.[cohort]')")
    batch.add_argument("--address", help="with --engine ray: Ray cluster address (e.g. auto, ray://head:10001); "
                                         "default: start a local Ray instance")
    batch.add_argument("--workers", type=thread_count, default=1,
                       help="cases at once on the local Ray instance (default 1; the local engine runs 1; on a "
                            "cluster, --address, its free resources decide)")
    batch.add_argument("--num-cpus", type=_positive, default=None,
                       help="with --engine ray: CPUs per Ray task, more than 0 (default 1)")
    batch.add_argument("--num-gpus", type=_non_negative, default=None,
                       help="with --engine ray: GPUs per Ray task, 0 for the CPU (default: where there are GPUs, "
                            "1/ceil(workers/GPUs) each on the local Ray instance, 1 on a cluster; else 0, the CPU); on "
                            "the local Ray instance at most the GPUs here in all (--workers x --num-gpus)")
    batch.add_argument("--device", default="auto",
                       help="auto (GPU when available), cpu, cuda or cuda:N (GPU N, from 0; default: auto); with "
                            "--engine ray, cuda and auto are the GPU(s) Ray gives each task (--num-gpus), and cuda:N "
                            "the task's GPU N")
    batch.add_argument("--threads", type=thread_count, default=None,
                       help="PyTorch CPU threads per case (default: PyTorch's; with Ray: --num-cpus)")
    batch.add_argument("--model", help="model folder (default: the shipped model)")
    batch.add_argument("--dicom-seg", action="store_true",
                       help="also write segmentation.dcm for non-DICOM inputs (referencing no series)")
    redo = batch.add_mutually_exclusive_group()
    redo.add_argument("--resume", dest="force", action="store_false",
                      help="skip cases that are complete and unchanged (the default)")
    redo.add_argument("--force", dest="force", action="store_true", help="run every case again")
    batch.add_argument("--progress", choices=("bar", "none"), default="bar",
                       help="progress bar over the cases on stderr, or nothing (default: bar)")
    batch.set_defaults(func=cmd_batch, force=False)
    return batch
