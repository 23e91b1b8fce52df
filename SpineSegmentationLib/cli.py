"""The ``spineseg`` command line: segment, train, evaluate, info.

Run ``spineseg --help`` or ``spineseg COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

from .errors import Interrupted, OutputWriteError, SpineSegmentationError
from .threads import thread_count, torch_threads, whole_number

DESCRIPTION = """\
Vertebra segmentation, labelling (VerSe numbers: 1-7 C1-C7, 8-19 T1-T12, 20-24 L1-L5, 25 L6, 26 sacrum,
28 T13) and completeness classification in CT, with the iterative FCN of Lessmann et al. 2019.
"""

SEGMENT_EPILOG = """\
outputs (in OUTDIR, default <input stem>_spineseg/ next to the input):
  labels.nii.gz          label map on the input grid, VerSe numbers (int16)
  segmentation.seg.nrrd  one segment per vertebra for 3D Slicer (name, colour, SNOMED CT code,
                         completeness and confidence tags)
  vertebrae.json         per vertebra: label, name, complete, p_complete, p_label, centroid_ras_mm,
                         volume_mm3; run information (model, device, time per stage, iterations)
  centroids_ctd.json     vertebral-body centres in the VerSe centroid format (voxel units of labels.nii.gz)
  qc.png                 sagittal and coronal views with each vertebra coloured and named
  segmentation.dcm       DICOM SEG (one segment per vertebra, SNOMED CT codes, completeness in the segment
                         description) referencing the source series; for a DICOM series input, or on request
                         (--dicom-seg) for another input, then referencing no series
Existing outputs are never overwritten unless --overwrite is given.

--progress json prints one JSON object per line on stdout:
  {"stage": str, "fraction": float, "vertebra": int or null, "message": str}
and a final {"stage": "result", "output_dir": str, "message": str}.
"""


def _input_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def default_output_dir(input_path: Path) -> Path:
    """``<input stem>_spineseg/`` next to the input (for a DICOM folder: next to the folder, also when it is given as
    "." or "..")."""
    input_path = Path(input_path)
    if input_path.name in ("", ".."):
        input_path = input_path.resolve()
    return input_path.parent / f"{_input_stem(input_path)}_spineseg"


def _progress_printer(mode: str):
    if mode == "none":
        return None, lambda: None
    if mode == "json":
        def emit(event):
            print(json.dumps({"stage": event.stage, "fraction": round(event.fraction, 4),
                              "vertebra": event.vertebra, "message": event.message}), flush=True)
        return emit, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed} {postfix}", file=sys.stderr)

    def update(event):
        bar.set_description(event.stage if event.vertebra is None else f"{event.stage}: vertebra {event.vertebra}")
        bar.n = int(round(100 * event.fraction))
        bar.refresh()

    return update, bar.close


#: Help of ``--overwrite`` for every command that writes an output folder.
OVERWRITE_HELP = ("replace existing outputs in OUTDIR; a segmentation.dcm there that this run does not write is "
                  "deleted (it belongs to an earlier result)")


def earlier_dicom_seg(output_dir: Path, overwrite: bool) -> Optional[Path]:
    """The ``segmentation.dcm`` in ``output_dir`` that writing the outputs with ``overwrite`` deletes unless the run
    writes one (an earlier result's, which would not match the new outputs); None when there is none."""
    from .outputs.dicom_seg import DICOM_SEG_FILE

    path = output_dir / DICOM_SEG_FILE
    return path if overwrite and path.is_file() else None


def say_removed_dicom_seg(earlier: Optional[Path], written: dict, prog: str, requested: bool) -> None:
    """Say on stderr that ``earlier`` (:func:`earlier_dicom_seg`) was deleted, when the run wrote no DICOM SEG
    (``written``: what ``write_outputs`` returned; ``requested``: a SEG was asked for, and the result had no
    vertebra to put in one)."""
    if earlier is not None and "dicom_seg" not in written:
        why = "a DICOM SEG needs at least one vertebra" if requested else "--dicom-seg writes one"
        print(f"{prog}: removed {earlier}: the DICOM SEG of an earlier result, which this run replaces by none "
              f"({why})", file=sys.stderr)


def run_and_write(args: argparse.Namespace, compute, check_header: Optional[Callable] = None,
                  prog: str = "spineseg") -> tuple:
    """The shared body of every command that turns an input CT into an output folder.

    In this order, so that every refusal comes before the work: checks that the outputs are free, claims the
    output folder (:class:`~SpineSegmentationLib.outputs.OutputStaging`: writability, one writer at a time),
    reads the input's header and runs ``check_header(header)`` on it (memory budget, dimensions), reads
    ``args.input`` (``args.series_uid`` for a DICOM folder with several series), runs
    ``compute(image, progress_callback) -> SpineSegmentationResult`` with the progress display chosen by
    ``args.progress``, writes the five outputs together (with ``--overwrite`` an earlier result's
    ``segmentation.dcm`` that the run does not replace is deleted, and ``prog`` says so on stderr), and prints the
    final JSON line in ``--progress json`` mode.

    Returns:
        ``(result, output_dir, paths)``.

    Raises:
        Interrupted: Ctrl-C or SIGTERM; its message says during which stage and what was left on disk.
        OutputWriteError: as raised by the writers, with what was left on disk.
        SpineSegmentationError: bad input, model or options (nothing written).
    """
    from .io import read_image, read_image_header
    from .outputs import OutputStaging, check_outputs_free, write_outputs

    input_path = Path(args.input)
    output_dir = Path(args.output) if args.output else default_output_dir(input_path)
    series_uid = getattr(args, "series_uid", None)
    check_outputs_free(output_dir, overwrite=args.overwrite, input_path=input_path)  # fail before the work
    earlier = earlier_dicom_seg(output_dir, args.overwrite)
    stage = ["checking the input"]
    display = [None, lambda: None]  # the progress display (callback, close), made once the checks have passed

    def on_progress(event):
        stage[0] = event.stage
        return display[0](event) if display[0] is not None else None

    staging = OutputStaging(output_dir)
    try:
        with staging:
            if check_header is not None:
                check_header(read_image_header(input_path, series_uid))
            display[:] = _progress_printer(args.progress)
            stage[0] = "read"
            image = read_image(input_path, series_uid)
            result = compute(image, on_progress)
            if series_uid:  # the series the DICOM SEG references
                result.run_info["dicom_series_uid"] = series_uid
            stage[0] = "writing the outputs"
            paths = write_outputs(result, image, output_dir, overwrite=args.overwrite, input_path=input_path,
                                  staging=staging, dicom_seg=getattr(args, "dicom_seg", False))
    except KeyboardInterrupt as exc:
        raise Interrupted.of(exc, f" during {stage[0]}; {staging.left_behind()}") from None
    except OutputWriteError as exc:
        raise OutputWriteError(f"{exc}; {staging.left_behind()}") from exc
    finally:
        display[1]()
    say_removed_dicom_seg(earlier, paths, prog, getattr(args, "dicom_seg", False))
    if args.progress == "json":
        print(json.dumps({"stage": "result", "output_dir": str(output_dir), "message": result.message}), flush=True)
    return result, output_dir, paths


def _workers(text: str) -> int:
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (the training process itself) or more, got {value}")
    return value


def _memory_size(text: str) -> int:
    """"8GB", "8 GB", "8" (GB), "500MB", "7.5GiB" -> bytes (GB = 10^9, GiB = 2^30)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]i?[bB]?)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a memory size such as 8GB, 500MB or 16GiB, got {text!r}")
    unit = (match.group(2) or "G").upper().rstrip("B")
    factor = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
    value = int(float(match.group(1)) * factor[unit])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text!r}")
    return value


def cmd_segment(args: argparse.Namespace) -> int:
    from .pipeline import resolve_device

    device = resolve_device(args.device)  # an unusable device fails here, before anything else
    with torch_threads(args.threads):
        return _segment(args, device)


def _segment(args: argparse.Namespace, device) -> int:
    from .models import load_model
    from .pipeline import segment_spine
    from .sanity import warning_lines
    from .validation import validate_header

    model = load_model(args.model, device=device)  # a bad model fails here, before the input is read

    def check_header(header):
        validate_header(header, model.preprocessing.spacing_mm, args.max_memory)

    def compute(image, callback):
        return segment_spine(
            image, model=model, device=device, direction=args.direction, progress=callback,
            use_localization=not args.no_localization, refine_surface=args.surface_refinement,
            max_memory_bytes=args.max_memory, test_time_mirror=args.test_time_mirror,
        )

    result, output_dir, paths = run_and_write(args, compute, check_header)
    warnings = result.run_info.get("warnings", [])
    for warning in warnings:
        print(f"spineseg: warning: {warning}", file=sys.stderr)
    if args.progress != "json":
        print(_without_suffix(result.message, warning_lines(warnings)))  # the warnings went to stderr, once
        for v in result.vertebrae:
            print(f"  {v.name:4s} {'complete  ' if v.complete else 'INCOMPLETE'} p_label {v.p_label:.2f} "
                  f"p_complete {v.p_complete:.2f} volume {v.volume_mm3 / 1000:.1f} cm3")
        print(f"outputs in {output_dir}: " + ", ".join(p.name for p in paths.values()))
    return 0


def _without_suffix(text: str, suffix: str) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    train(args.config, output_dir=args.output, resume=args.resume, device=args.device, seed=args.seed,
          num_threads=args.threads, workers=args.workers)  # prints "model written to ..." at its end
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import (POINTS_REPORT_FILE, REPORT_FILES, check_report_free, evaluate, evaluate_points,
                             format_table, write_points_report, write_report)

    points = args.reference.lower().endswith(".json")
    if args.centroids_grid and not points:
        raise SpineSegmentationError("--centroids-grid goes with a centroid file (*.json) as the reference; a label "
                                     "map reference has its own grid")
    if points and args.reference_convention != "verse":
        raise SpineSegmentationError(f"--reference-convention {args.reference_convention} goes with a label map as the "
                                     "reference; a centroid file (*.json) holds VerSe label numbers (the VerSe "
                                     "centroid format): leave the option out")
    if args.overwrite and not args.output:
        raise SpineSegmentationError("--overwrite replaces an earlier report in the folder -o OUTDIR, and without -o "
                                     "no report is written: add -o OUTDIR, or leave --overwrite out")
    if args.output:  # an earlier report is refused before the work, not after the table is printed
        check_report_free(args.output, [POINTS_REPORT_FILE] if points else REPORT_FILES, args.overwrite)
    if points:  # point references (VerSe centroid file)
        result = evaluate_points(args.prediction, args.reference, prediction_convention=args.prediction_convention,
                                 centroids_grid=args.centroids_grid)
        print(json.dumps(result, indent=2))
        if args.output:
            print(f"written: {write_points_report(result, args.output, overwrite=args.overwrite)}")
        return 0
    report = evaluate(args.prediction, args.reference, reference_convention=args.reference_convention,
                      prediction_convention=args.prediction_convention)
    print(format_table(report))
    if args.output:
        written = write_report(report, Path(args.output), overwrite=args.overwrite)
        print("written: " + ", ".join(str(p) for p in written.values()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .models import load_model

    model = load_model(args.model)
    print(model.description)
    print(json.dumps({"preprocessing": model.preprocessing.__dict__, "traversal": model.traversal.__dict__,
                      "localization": model.localization.__dict__, "training": model.training}, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spineseg", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('SpineSegmentationLib').__version__}")
    add_debug(parser, default=False)
    add_exit_with_parent(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment, label and flag every vertebra in a CT",
                         description="Segment, label and flag the completeness of every vertebra in a CT (HU).",
                         epilog=SEGMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg.add_argument("input", help="CT image: NIfTI (.nii/.nii.gz), NRRD, MetaImage (.mha/.mhd) or a DICOM series "
                                   "folder (slice files, or one multi-frame Enhanced CT file)")
    seg.add_argument("-o", "--output", metavar="OUTDIR",
                     help="output folder (default: <input stem>_spineseg/ next to the input)")
    seg.add_argument("--device", default="auto",
                     help="auto (GPU when available), cpu, cuda or cuda:N (GPU N, from 0; default: auto)")
    seg.add_argument("--series-uid", help="for a DICOM folder holding several series: the Series Instance UID "
                                          "(0020,000E) of the one to segment (the error message lists them)")
    seg.add_argument("--max-memory", type=_memory_size, default=None, metavar="SIZE",
                     help="memory budget, e.g. 8GB or 16GiB (default: 8GB); a CT whose estimated need (from its "
                          "header, before it is read) is larger is refused at once")
    seg.add_argument("--threads", type=thread_count, default=None,
                     help="CPU threads for the networks (default: PyTorch's, one per physical core; more than the "
                          "cores is slower; use 1 per job when running several jobs at once)")
    seg.add_argument("--model", help="model folder (default: the shipped model in Resources/Models/spineseg-default)")
    seg.add_argument("--direction", choices=("up", "down"), help="traversal direction (default: the model's, 'up')")
    seg.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    seg.add_argument("--dicom-seg", action="store_true",
                     help="also write segmentation.dcm (DICOM SEG) for a non-DICOM input; it then references no "
                          "DICOM series (for a DICOM series input it is always written)")
    seg.add_argument("--progress", choices=("bar", "json", "none"), default="bar",
                     help="progress display: a bar on stderr, JSON lines on stdout, or nothing")
    seg.add_argument("--no-localization", action="store_true",
                     help="sweep the whole volume instead of searching where the attention network finds the spine")
    seg.add_argument("--surface-refinement", action=argparse.BooleanOptionalAction, default=None,
                     help="remove surface voxels below 200 HU from every vertebra (seed 002 section 3.1) or not "
                          "(default: the model's setting; off for the shipped model)")
    seg.add_argument("--test-time-mirror", action=argparse.BooleanOptionalAction, default=None,
                     help="also run the network on every patch mirrored left-right and average the two (default: "
                          "the model's setting; on for the shipped model; off halves the network's work)")
    add_debug(seg)
    seg.set_defaults(func=cmd_segment)

    tr = sub.add_parser("train", help="train a model from a JSON configuration",
                        description="Train the attention network and the iterative FCN (seed 002 section 3.6) from "
                                    "a JSON configuration. Its data: real CTs with label maps (data.verse_root: "
                                    "VerSe-layout folders; data.manifest: a CSV image,labels,convention[,split]"
                                    "[,teacher]) and/or label maps that synthetic CTs are built from "
                                    "(data.synthetic_masks_root: VerSe-layout mask folders; data.anatomy_maps: "
                                    "TotalSegmentator v2 whole-anatomy maps); relative paths are relative to the "
                                    "configuration file. The model is written to RUNDIR/<name> (the configuration's "
                                    "name).")
    tr.add_argument("config", help="training configuration (JSON), e.g. Resources/TrainingConfigs/default_cpu.json")
    tr.add_argument("-o", "--output", metavar="RUNDIR", required=True,
                    help="run folder (a new one, or the run's own with --resume): checkpoint.pt, config.json, "
                         "loss_log.csv, loss_curve.png and, at the end, the model folder RUNDIR/<name>")
    tr.add_argument("--resume", action="store_true",
                    help="continue from RUNDIR/checkpoint.pt with the configuration the run began with: only "
                         "fcn_training.max_iterations, max_wall_minutes, checkpoint_every and log_every may change "
                         "(a finished run trains on once the limit it reached is raised)")
    tr.add_argument("--device", default="auto",
                    help="auto (GPU when available), cpu, cuda or cuda:N (GPU N, from 0; default: auto)")
    tr.add_argument("--seed", type=int, default=None, help="random seed (default: the config's)")
    tr.add_argument("--threads", type=thread_count, default=None,
                    help="CPU threads for training (default: 2, or 1 where this process can use only one CPU core; "
                         "use 1 per run when training two runs side by side on one machine); recorded in the model "
                         "card")
    tr.add_argument("--workers", type=_workers, default=0,
                    help="processes that draw the training patches (default: 0, the training process itself, "
                         "reproducible from the seed); on a GPU use about one per CPU core so that the GPU is kept "
                         "busy; recorded in the model card")
    tr.set_defaults(func=cmd_train)

    from .anatomy import CONVENTIONS

    ev = sub.add_parser("evaluate", help="compare a segmentation with a reference",
                        description="Per-vertebra Dice, ASSD, HD95, identification rate, label kappa, instance "
                                    "purity and instances spanning two vertebrae, completeness accuracy, false "
                                    "positives/negatives; against a centroid file: identification per level.")
    ev.add_argument("prediction", help="a spineseg output folder or a label map (VerSe numbers unless "
                                       "--prediction-convention says otherwise; a 3D Slicer .seg.nrrd whose segments "
                                       "are named as levels, L1, 'L1 vertebra' or vertebrae_L1, or carry a level's "
                                       "terminology (spineseg's SNOMED CT codes; 3D Slicer's own lists code only "
                                       "'Vertebra', no level: name such segments as levels), is read by its segments "
                                       "(the name first, where the two disagree; a warning says so); a segmentation "
                                       "saved in layers (overlapping segments) is refused: collapse it to one layer "
                                       "in Slicer's Segmentations module, Binary labelmap layers)")
    ev.add_argument("reference", help="reference label map (as the prediction), or a VerSe centroid file (*.json, "
                                      "voxel units of the prediction's grid unless --centroids-grid) for "
                                      "identification against points")
    ev.add_argument("--reference-convention", default="verse", choices=CONVENTIONS,
                    help="numbering of the reference (default: verse)")
    ev.add_argument("--prediction-convention", default="verse", choices=CONVENTIONS,
                    help="numbering of the prediction, e.g. totalseg for TotalSegmentator's output (default: verse)")
    ev.add_argument("--centroids-grid", metavar="IMAGE",
                    help="with a centroid file: the image whose voxel grid its points are in (e.g. the CT as VerSe "
                         "ships it, when the prediction was made on a resampled copy); default: the prediction's")
    ev.add_argument("-o", "--output", metavar="OUTDIR",
                    help="folder for the report: against a label map evaluation.json, evaluation.csv and "
                         "evaluation.png; against a centroid file only evaluation_points.json")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing evaluation report in OUTDIR")
    ev.set_defaults(func=cmd_evaluate)

    from .cohort.batch import add_batch_parser

    add_batch_parser(sub)

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", nargs="?", help="model folder (default: the shipped model)")
    info.set_defaults(func=cmd_info)
    return parser


def add_debug(parser: argparse.ArgumentParser, default=argparse.SUPPRESS) -> None:
    """``--debug`` (on the main parser and on a command, so that it works before and after the command name)."""
    parser.add_argument("--debug", action="store_true", default=default,
                        help="on an error, print the Python traceback before the error line")


def add_exit_with_parent(parser: argparse.ArgumentParser) -> None:
    """``--exit-when-stdin-closes`` (before the command name)."""
    parser.add_argument("--exit-when-stdin-closes", action="store_true",
                        help="stop as after SIGTERM when standard input reaches its end: a program that starts this "
                             "one with a pipe on standard input (the Slicer module) ends it that way also when it "
                             "exits or crashes without stopping it")


#: Exit status of a run stopped by a signal: 128 + the signal's number (the shell's convention).
_SIGNAL_EXIT_BASE = 128
#: Seconds a command has to stop cleanly (outputs removed) once its standard input closed; then it ends at once.
STDIN_CLOSED_GRACE_S = 30.0


def _exit_when_stdin_closes() -> None:
    """Watch standard input in a daemon thread. At its end (the parent's pipe closed: the parent ended, crashed or
    closed it) the command stops as after SIGTERM, in the main thread (outputs removed, exit 143); a command that
    has not stopped after :data:`STDIN_CLOSED_GRACE_S` seconds (e.g. inside a long native call) ends at once."""
    try:
        descriptor = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return  # no standard input to watch (pythonw)

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked in a buffered reader aborts the interpreter at exit
        while os.read(descriptor, 1 << 16):
            pass  # the parent writes nothing; anything written is ignored
        if hasattr(signal, "pthread_kill"):  # to the main thread: held while it commits outputs (signals_deferred)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        else:  # Windows: the handler runs in the main thread (run_cli), else the default ends the process
            signal.raise_signal(signal.SIGTERM)
        time.sleep(STDIN_CLOSED_GRACE_S)
        os._exit(_SIGNAL_EXIT_BASE + int(signal.SIGTERM))

    threading.Thread(target=watch, name="spineseg-stdin-watch", daemon=True).start()


def run_cli(parser: argparse.ArgumentParser, argv: Optional[list[str]], errors=(SpineSegmentationError,)) -> int:
    """Parse ``argv`` and run the chosen command; every failure ends with one ``PROG: error: ...`` line on stderr.

    Exit status: 0 done; 2 for what the user can fix (``errors``: bad input, model or options; the output
    folder not writable, the disk full, another run writing there); 1 for internal errors and out-of-memory;
    130 after Ctrl-C and 143 after SIGTERM (the message says what was left on disk). No traceback unless
    ``--debug``. SIGTERM is handled like Ctrl-C while the command runs (outputs are removed, not left half
    written). A ``UserWarning`` raised while the command runs is one ``PROG: warning: ...`` line on stderr
    (:func:`warnings_as_lines`).
    """
    args = parser.parse_args(argv)
    previous = _stop_on_sigterm()
    if getattr(args, "exit_when_stdin_closes", False):
        _exit_when_stdin_closes()
    try:
        with warnings_as_lines(parser.prog):
            return args.func(args)
    except Exception as exc:  # every failure becomes one error line; --debug adds the traceback
        failure = exc
        status, message = _failure(exc, errors)
    except KeyboardInterrupt as exc:
        failure = exc
        number = getattr(exc, "signal_number", signal.SIGINT)
        status, message = _SIGNAL_EXIT_BASE + int(number), str(exc) or "interrupted (Ctrl-C)"
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if getattr(args, "debug", False):
        traceback.print_exception(type(failure), failure, failure.__traceback__)  # Python 3.9 (Slicer 5.6)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return status


@contextmanager
def warnings_as_lines(prog: str) -> Iterator[None]:
    """Show each ``UserWarning`` (and subclass) raised in the block as one ``PROG: warning: MESSAGE`` line on stderr,
    as the commands print their own warnings, instead of Python's ``file:line: UserWarning: ...`` and source line.

    Which warnings are shown, and how often, stays with the warning filters (``-W``, ``PYTHONWARNINGS``; by default
    a warning once per place it is raised from); other categories are shown as Python shows them. The previous
    display is restored afterwards: a library caller (Python API) sees warnings as before.

    The library's log records of level WARNING and above (``SpineSegmentationLib.*`` loggers, e.g. the DICOM SEG's
    "Patient's Sex 'm' ... written as 'M'") are shown the same way (``PROG: warning: ...``, ``PROG: error: ...``)
    while the block runs, and only so (not also by a handler of the caller's root logger): without a handler Python
    printed the bare message. A line is printed below an open progress bar, not onto it (:func:`_print_line`).
    """
    handler = _LineHandler(prog)
    package = logging.getLogger(__package__)
    package.addHandler(handler)
    propagate, package.propagate = package.propagate, False  # a handler of the caller's root logger: no second line
    try:
        with warnings.catch_warnings():
            shown_by_python = warnings.showwarning

            def show(message, category, filename, lineno, file=None, line=None):
                if not issubclass(category, UserWarning):
                    shown_by_python(message, category, filename, lineno, file, line)
                    return
                _print_line(f"{prog}: warning: {message}", sys.stderr if file is None else file)

            warnings.showwarning = show
            yield
    finally:
        package.removeHandler(handler)
        package.propagate = propagate


def _print_line(text: str, stream) -> None:
    """Print ``text`` as a line on ``stream`` without running into an open progress bar (tqdm clears it and draws it
    again below the line)."""
    from tqdm import tqdm

    with tqdm.external_write_mode(file=stream):
        print(text, file=stream)


class _LineHandler(logging.Handler):
    """A log record of level WARNING or above as one ``PROG: warning: MESSAGE`` (``error``, ``critical``) line on the
    standard error of the moment (a test's captured one too)."""

    def __init__(self, prog: str) -> None:
        super().__init__(logging.WARNING)
        self.prog = prog

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _print_line(f"{self.prog}: {record.levelname.lower()}: {record.getMessage()}", sys.stderr)
        except Exception:  # noqa: BLE001 - logging's own rule: a failing handler reports through handleError
            self.handleError(record)


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`Interrupted` while a command runs (main thread only); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(number, frame):
        raise Interrupted("terminated (SIGTERM)", number)

    return signal.signal(signal.SIGTERM, stop)


def _failure(exc: Exception, errors: tuple) -> tuple[int, str]:
    """(exit status, message) for an exception that ended a command."""
    if isinstance(exc, errors):
        return 2, str(exc)
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
        where = "GPU" if type(exc).__name__ == "OutOfMemoryError" else "main"
        return 1, (f"out of {where} memory ({exc or 'MemoryError'}). Crop the CT to the spine, run with --device "
                   "cpu if the GPU is small, or run on a machine with more memory; --max-memory sets the budget "
                   "the input is checked against")
    if isinstance(exc, OSError):
        return 2, _os_error_message(exc)
    return 1, (f"internal error ({type(exc).__name__}: {exc}). This is a bug; please report it with the output "
               "of the same command with --debug")


def _os_error_hints() -> tuple:
    """The hint for an ``OSError`` without a file name, by its errno (the causes ``outputs.staging`` tells apart):
    only a cause that the error can have."""
    from .outputs.staging import MISSING_PATH_ERRNOS, NO_PERMISSION_ERRNOS, NO_SPACE_ERRNOS

    return ((MISSING_PATH_ERRNOS, "check the path"),
            (NO_PERMISSION_ERRNOS, "check the permissions (read permission for an input; for an output a writable "
                                   "file system with write permission, or another folder with -o)"),
            (NO_SPACE_ERRNOS, "the disk is full or a size/quota limit was reached: free some space"))


def _os_error_message(exc: OSError) -> str:
    """The error line's message for an ``OSError`` that ended a command.

    One raised by this package with a message and no errno (e.g. ``FileNotFoundError("training configuration X not
    found; ...")``) already names the path and the fix: it is shown as it is. One from the operating system that
    names a file and a full disk is a write's: it is described as a write error
    (:func:`~.outputs.staging.describe_write_error`: the disk, the free space, -o). Any other (a read's or a
    write's: the error does not tell) names the file it has and gets a hint only where its errno can be the cause
    (a missing path, the permissions, the disk).
    """
    from .outputs.staging import NO_SPACE_ERRNOS, describe_write_error

    if exc.errno is None:
        return str(exc)
    if exc.filename is not None and exc.errno in NO_SPACE_ERRNOS:  # only a write fills the disk
        return str(describe_write_error(exc, Path(exc.filename)))
    hint = next((text for numbers, text in _os_error_hints() if exc.errno in numbers), None)
    reason = exc.strerror or str(exc)
    if exc.filename is not None:
        reason = f"cannot access {exc.filename}: {reason}"
    return f"{reason}; {hint}" if hint else reason


def main(argv: Optional[list[str]] = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
