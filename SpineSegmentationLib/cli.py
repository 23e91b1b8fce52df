"""The ``spineseg`` command line: segment, train, evaluate, info.

Run ``spineseg --help`` or ``spineseg COMMAND --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .errors import OutputExistsError, SpineSegmentationError

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
  centroids_ctd.json     centroids in the VerSe centroid format (voxel units of labels.nii.gz)
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
    """``<input stem>_spineseg/`` next to the input (for a DICOM folder: next to the folder)."""
    input_path = Path(input_path)
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


def run_and_write(args: argparse.Namespace, compute) -> tuple:
    """The shared body of every command that turns an input CT into an output folder.

    Checks that the outputs are free (before any work), reads ``args.input``, runs
    ``compute(image, progress_callback) -> SpineSegmentationResult`` with the progress display chosen by
    ``args.progress``, writes the five outputs, and prints the final JSON line in ``--progress json`` mode.

    Returns:
        ``(result, output_dir, paths)``.
    """
    from .io import read_image
    from .outputs import check_outputs_free, write_outputs

    input_path = Path(args.input)
    output_dir = Path(args.output) if args.output else default_output_dir(input_path)
    check_outputs_free(output_dir, overwrite=args.overwrite, input_path=input_path)  # fail before the work
    callback, close = _progress_printer(args.progress)
    try:
        image = read_image(input_path)
        result = compute(image, callback)
        paths = write_outputs(result, image, output_dir, overwrite=args.overwrite, input_path=input_path,
                              dicom_seg=getattr(args, "dicom_seg", False))
    finally:
        close()
    if args.progress == "json":
        print(json.dumps({"stage": "result", "output_dir": str(output_dir), "message": result.message}), flush=True)
    return result, output_dir, paths


def _threads(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def cmd_segment(args: argparse.Namespace) -> int:
    from .pipeline import segment_spine

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    def compute(image, callback):
        return segment_spine(
            image, model=args.model, device=args.device, direction=args.direction, progress=callback,
            use_localization=not args.no_localization, refine_surface=args.surface_refinement,
        )

    result, output_dir, paths = run_and_write(args, compute)
    if args.progress != "json":
        print(result.message)
        for v in result.vertebrae:
            print(f"  {v.name:4s} {'complete  ' if v.complete else 'INCOMPLETE'} p_label {v.p_label:.2f} "
                  f"p_complete {v.p_complete:.2f} volume {v.volume_mm3 / 1000:.1f} cm3")
        print(f"outputs in {output_dir}: " + ", ".join(p.name for p in paths.values()))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    model_dir = train(args.config, output_dir=args.output, resume=args.resume, device=args.device, seed=args.seed)
    print(f"model written to {model_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, evaluate_points, format_table, write_report

    if args.reference.lower().endswith(".json"):  # point references (VerSe centroid file)
        result = evaluate_points(args.prediction, args.reference)
        print(json.dumps(result, indent=2))
        if args.output:
            out = Path(args.output) / "evaluation_points.json"
            if out.exists() and not args.overwrite:
                raise OutputExistsError(f"{out} already exists; pass --overwrite or choose another folder with -o")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            print(f"written: {out}")
        return 0
    report = evaluate(args.prediction, args.reference, reference_convention=args.reference_convention)
    print(format_table(report))
    if args.output:
        written = write_report(report, Path(args.output), overwrite=args.overwrite)
        print("written: " + ", ".join(str(p) for p in written))
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
    sub = parser.add_subparsers(dest="command", required=True)

    seg = sub.add_parser("segment", help="segment, label and flag every vertebra in a CT",
                         description="Segment, label and flag the completeness of every vertebra in a CT (HU).",
                         epilog=SEGMENT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    seg.add_argument("input", help="CT image: NIfTI (.nii/.nii.gz), NRRD, MetaImage (.mha/.mhd) or a DICOM series folder")
    seg.add_argument("-o", "--output", help="output folder (default: <input stem>_spineseg/ next to the input)")
    seg.add_argument("--device", default="auto", help="auto (GPU when available), cpu or cuda (default: auto)")
    seg.add_argument("--threads", type=_threads, default=None,
                     help="CPU threads for the networks (default: PyTorch's, one per physical core; more than the "
                          "cores is slower; use 1 per job when running several jobs at once)")
    seg.add_argument("--model", help="model folder (default: the shipped model in Resources/Models/spineseg-default)")
    seg.add_argument("--direction", choices=("up", "down"), help="traversal direction (default: the model's, 'up')")
    seg.add_argument("--overwrite", action="store_true", help="replace existing outputs in OUTDIR")
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
    seg.set_defaults(func=cmd_segment)

    tr = sub.add_parser("train", help="train a model from a JSON configuration",
                        description="Train the attention network and the iterative FCN (seed 002 section 3.6) from "
                                    "a JSON configuration naming a VerSe-layout folder and/or a manifest CSV.")
    tr.add_argument("config", help="training configuration (JSON), e.g. Resources/TrainingConfigs/default_cpu.json")
    tr.add_argument("-o", "--output", help="run folder for checkpoints, logs and the model (default: from the config)")
    tr.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the run folder")
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda")
    tr.add_argument("--seed", type=int, default=None, help="random seed (default: the config's)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="compare a segmentation with a reference",
                        description="Per-vertebra Dice, ASSD, HD95, identification rate, label kappa, instance "
                                    "purity and instances spanning two vertebrae, completeness accuracy, false "
                                    "positives/negatives; against a centroid file: identification per level.")
    ev.add_argument("prediction", help="a spineseg output folder or a label map (VerSe numbers)")
    ev.add_argument("reference", help="reference label map, or a VerSe centroid file (*.json, voxel units of the "
                                      "prediction's grid) for identification against points")
    ev.add_argument("--reference-convention", default="verse", choices=("verse", "totalseg", "totalseg_vertebrae"),
                    help="numbering of the reference (default: verse)")
    ev.add_argument("-o", "--output", help="folder for evaluation.json, evaluation.csv and evaluation.png")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing evaluation report in OUTDIR")
    ev.set_defaults(func=cmd_evaluate)

    from .cohort.batch import add_batch_parser

    add_batch_parser(sub)

    info = sub.add_parser("info", help="describe a model folder")
    info.add_argument("model", nargs="?", help="model folder (default: the shipped model)")
    info.set_defaults(func=cmd_info)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: Optional[list[str]], errors=(SpineSegmentationError,)) -> int:
    """Parse ``argv`` and run the chosen command: exit code 2 with the error's message (which names the fix) for
    ``errors``, 130 on Ctrl-C."""
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except errors as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; no output was written", file=sys.stderr)
        return 130


def main(argv: Optional[list[str]] = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
