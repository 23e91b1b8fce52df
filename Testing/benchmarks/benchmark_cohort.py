"""Cohort throughput benchmark (not a test): scans per hour of ``spineseg batch`` with the local engine and with Ray.

The cohort is a small set of the shared real CTs (``../shared/data``, see its README.md), by default:

  example_ct      TotalSegmentator example, 122x101x112 at 3 mm (abdomen)
  tptbox_lumbar   TPTBox lumbar crop, 73x47x73 at 1.5 mm
  chest_crop      TotalSegmentator chest crop, 1.5 mm
  lung1           pyradiomics lung1, 512x512x48 at 0.57x0.57x5 mm (upper chest)

Each configuration runs the whole cohort into a fresh output folder (``--force`` is not needed: nothing is there),
in its own process, exactly as ``spineseg batch`` does; the wall time includes everything a user waits for: reading,
segmenting, writing, the summary and, for Ray, starting the local Ray instance and its workers (a worker of CPU
tasks loads the model once; Ray ends a GPU task's worker after each case, so each GPU case loads it afresh).
Configurations: ``local`` (one case after the other, ``--threads`` CPU threads), ``ray1`` (local Ray instance,
1 worker, ``--num-cpus`` CPUs per task), ``ray2`` (2 workers).

Usage:
    python Testing/benchmarks/benchmark_cohort.py [--device cpu|cuda] [--threads N] [--num-cpus C]
        [--num-gpus G] [--configs local ray1 ray2] [--cases example_ct ...] [--repeat R]

    The Ray configurations pass ``--num-gpus G`` only where it is given here; without it they measure
    ``spineseg batch``'s default: with ``--device auto`` or ``cuda`` each task gets a share of the GPUs PyTorch finds
    here, 1/ceil(workers/GPUs) (0, the CPU, where there are none), and with ``--device cpu`` (this benchmark's
    default) none. Give e.g. ``--num-gpus 0`` to run the Ray tasks on the CPU beside GPUs, or 0.5 for two workers on
    one GPU.

Prints the start-up of an empty local Ray instance (``ray.init`` + one trivial task + shutdown, in a fresh
process), then per configuration: wall seconds, scans/hour, and the mean per-case seconds from ``summary.csv``
(read + segment + write of one case, model loading included for the first case of each worker).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data" / "ct"
CASES = {
    "example_ct": DATA / "totalsegmentator_example" / "example_ct.nii.gz",
    "tptbox_lumbar": DATA / "tptbox_lumbar_crop" / "sub-ct_label-22_ct.nii.gz",
    "chest_crop": DATA / "totalsegmentator_example" / "chest_ct_crop.nii.gz",
    "lung1": DATA / "pyradiomics_lung1" / "lung1_ct.nii.gz",
}
CONFIGS = {"local": ("local", 1), "ray1": ("ray", 1), "ray2": ("ray", 2)}


def build_cohort(names: list[str], folder: Path) -> Path:
    """A manifest CSV naming the chosen real CTs (paths as they are, nothing copied)."""
    missing = [str(CASES[n]) for n in names if not CASES[n].is_file()]
    if missing:
        sys.exit(f"real data missing: {', '.join(missing)}; the benchmark needs ../shared/data beside the checkout")
    manifest = folder / "cohort.csv"
    manifest.write_text("case_id,image\n" + "".join(f"{n},{CASES[n]}\n" for n in names))
    return manifest


def ray_startup_seconds(num_cpus: int) -> float:
    """Seconds to start and stop an empty local Ray instance with ``num_cpus`` CPUs, in a fresh process."""
    code = ("import time, ray; t = time.perf_counter(); ray.init(num_cpus=%d, include_dashboard=False, "
            "logging_level='ERROR'); ray.get(ray.remote(lambda: 1).remote()); print(time.perf_counter() - t); "
            "ray.shutdown()" % num_cpus)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def run_config(name: str, manifest: Path, args) -> dict:
    engine, workers = CONFIGS[name]
    with tempfile.TemporaryDirectory(prefix=f"cohort_{name}_") as out:
        command = [sys.executable, "-m", "SpineSegmentationLib.cli", "batch", "--manifest", str(manifest), "-o", out,
                   "--device", args.device, "--engine", engine, "--progress", "none"]
        if engine == "ray":
            command += ["--workers", str(workers), "--num-cpus", str(args.num_cpus)]
            if args.num_gpus is not None:  # else spineseg batch's default share
                command += ["--num-gpus", str(args.num_gpus)]
        else:
            command += ["--threads", str(args.threads)]
        start = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if not (Path(out) / "summary.csv").is_file():
            sys.exit(f"{name}: spineseg batch stopped ({proc.returncode}) without a summary: {proc.stderr[-2000:]}")
        with open(Path(out) / "summary.csv", newline="") as stream:
            rows = list(csv.DictReader(stream))
    per_case = {row["case_id"]: float(row["seconds"]) for row in rows}
    failed = sorted({row["case_id"] for row in rows if row["status"] == "failed"})
    if proc.returncode not in (0, len(failed)):
        sys.exit(f"{name}: spineseg batch failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"config": name, "wall_s": wall, "scans_per_hour": 3600 * len(per_case) / wall,
            "mean_case_s": statistics.mean(per_case.values()), "failed": failed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the local engine (default 2)")
    parser.add_argument("--num-cpus", type=int, default=1, help="CPUs per Ray task (default 1)")
    parser.add_argument("--num-gpus", type=float, default=None,
                        help="GPUs per Ray task (default: not passed, spineseg batch's default share)")
    parser.add_argument("--configs", nargs="+", choices=tuple(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cohort_bench_") as folder:
        manifest = build_cohort(args.cases, Path(folder))
        print(f"cohort: {len(args.cases)} real CTs ({', '.join(args.cases)}), device {args.device}")
        if any(CONFIGS[c][0] == "ray" for c in args.configs):
            print(f"empty local Ray instance, start + first task + stop: {ray_startup_seconds(args.num_cpus):.1f} s")
        print(f"{'config':8s} {'wall s':>8s} {'scans/h':>8s} {'mean s/case':>12s}  failed")
        for name in args.configs:
            runs = sorted((run_config(name, manifest, args) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
            r = runs[len(runs) // 2]
            print(f"{name:8s} {r['wall_s']:8.1f} {r['scans_per_hour']:8.0f} {r['mean_case_s']:12.1f}  "
                  f"{', '.join(r['failed']) or '-'}", flush=True)


if __name__ == "__main__":
    main()
