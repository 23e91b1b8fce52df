"""Benchmark of the whole pipeline (not a test): time per stage, network evaluations, peak memory.

Cases:
  shipped     the shipped real CT (Testing/Data/example_ct.nii.gz, 122x101x112 at 3 mm)
  512x512x300 the same real CT resampled (linear) onto a 512 x 512 x 300 grid over the same field of view
              (0.72 x 0.60 x 1.12 mm): a chest/abdomen-sized volume with real anatomy
  long        the 512x512x300 volume padded to twice its length with air-free soft tissue (-> same vertebrae,
              twice the volume): cost must grow with vertebrae, not with volume

Usage:
    python Testing/benchmarks/benchmark_pipeline.py [--device cpu|cuda|auto] [--cases shipped 512x512x300 long]
        [--model PATH] [--threads N] [--repeat N] [--surface-refinement] [--json OUT.json]

For every case it prints IO time (reading the file, reported separately), the pipeline's time per stage
(volume in memory -> label map on the input grid), FCN and localization network evaluations, peak RSS of the
process per stage (sampled; each case runs in its own process; the baseline before the pipeline, with the input
volume loaded, is printed too) and peak allocated GPU memory per stage, the FLOPs of the
traversal's network evaluations and the rate achieved, and on GPU the ratio of the measured traversal time to the
time the GPU's dense bf16 arithmetic rate would need for the same network evaluations (the physical limit).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from SpineSegmentationLib.io import read_image  # noqa: E402
from SpineSegmentationLib.models import load_model  # noqa: E402
from SpineSegmentationLib.pipeline import resolve_device, segment_spine  # noqa: E402

SHIPPED_CT = REPO / "Testing" / "Data" / "example_ct.nii.gz"
#: Dense bf16 tensor throughput used for the physical-limit ratio, FLOP/s (vendor figures, dense, no sparsity).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def make_case(name: str, ct: sitk.Image) -> sitk.Image:
    if name == "shipped":
        return ct
    size = (512, 512, 300)
    lo = np.array(ct.GetOrigin())
    extent = np.array(ct.GetSize()) * np.array(ct.GetSpacing())
    spacing = extent / np.array(size)
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing(spacing.tolist())
    ref.SetDirection(ct.GetDirection())
    direction = np.array(ct.GetDirection()).reshape(3, 3)
    ref.SetOrigin((lo + direction @ (0.5 * (spacing - np.array(ct.GetSpacing())))).tolist())
    big = sitk.Resample(ct, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkInt16)
    if name == "512x512x300":
        return big
    if name == "long":
        arr = sitk.GetArrayFromImage(big)
        pad = np.full_like(arr, -1024)
        pad[:, 100:420, 60:460] = 40  # soft tissue, no bone
        longer = sitk.GetImageFromArray(np.concatenate([pad, arr], axis=0))
        longer.SetSpacing(big.GetSpacing())
        longer.SetDirection(big.GetDirection())
        # prepend below: move the origin down by the added length along the slice axis
        direction = np.array(big.GetDirection()).reshape(3, 3)
        origin = np.array(big.GetOrigin()) - direction[:, 2] * arr.shape[0] * big.GetSpacing()[2]
        longer.SetOrigin(origin.tolist())
        return longer
    raise ValueError(f"unknown case {name!r}")


def fcn_flops(model) -> float:
    """FLOPs of one evaluation of the iterative FCN (torch's FLOP counter): one forward pass of the patch, two with
    the test-time mirror (the patch and its mirror image)."""
    from torch.utils.flop_counter import FlopCounterMode

    p = model.fcn.config.patch_size
    passes = 2 if model.traversal.test_time_mirror else 1
    x = torch.zeros(passes, 2, p, p, p, device=next(model.fcn.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model.fcn(x)
    return float(counter.get_total_flops())


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class StageMemory:
    """Peak memory per pipeline stage, from the progress events that open each stage.

    A background thread samples the process's resident memory (RSS) every 5 ms. ``rss_mb[stage]``: the highest
    RSS (MB) sampled during the stage; ``baseline_rss_mb``: RSS before the pipeline (interpreter, torch, the model
    and the input volume already in memory). ``gpu_mb[stage]``: peak allocated GPU memory (MB) during the stage.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.process = psutil.Process()
        self.baseline_rss_mb = self.process.memory_info().rss / 2**20
        self.rss_mb: dict[str, float] = {}
        self.gpu_mb: dict[str, float] = {}
        self.stage = None
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            rss = self.process.memory_info().rss / 2**20
            with self._lock:
                self._peak = max(self._peak, rss)

    def _end_stage(self) -> None:
        with self._lock:
            peak, self._peak = max(self._peak, self.process.memory_info().rss / 2**20), 0.0
        if self.stage is None:
            return
        self.rss_mb[self.stage] = round(peak, 1)
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.gpu_mb[self.stage] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_progress(self, event) -> None:
        if event.stage != self.stage:
            self._end_stage()
            self.stage = event.stage

    def close(self) -> None:
        self._end_stage()
        self.stage = None
        self._stop.set()
        self._thread.join()


def run_case(name: str, ct_path: Path, model_path, device: torch.device, repeat: int = 1,
             refine_surface=None) -> dict:
    t0 = time.perf_counter()
    ct = read_image(ct_path)
    image = make_case(name, ct)
    with tempfile.TemporaryDirectory() as tmp:
        # IO measured on the actual case volume: write it once, time the read
        path = Path(tmp) / f"{name}.nii.gz"
        sitk.WriteImage(image, str(path))
        t_io = time.perf_counter()
        image = read_image(path)
        io_seconds = time.perf_counter() - t_io
    model = load_model(model_path, device=device)
    setup_seconds = time.perf_counter() - t0
    runs = []
    for _ in range(repeat):  # the run with the median total time is reported
        memory = StageMemory(device)
        t = time.perf_counter()
        result = segment_spine(image, model=model, device=device, progress=memory.on_progress,
                               refine_surface=refine_surface)
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        memory.close()
        # keep what the row needs, not the label map, so that earlier runs do not add to the next one's memory
        runs.append((elapsed, result.run_info, [v.name for v in result.vertebrae], memory))
        del result
    totals = [r[0] for r in runs]
    total, run_info, vertebrae, memory = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    row = {
        "case": name,
        "size": list(image.GetSize()),
        "spacing_mm": [round(s, 3) for s in image.GetSpacing()],
        "io_read_seconds": round(io_seconds, 3),
        "pipeline_seconds": round(total, 3),
        "stage_seconds": run_info["stage_seconds"],
        "fcn_evaluations": run_info["network_evaluations"]["iterative_fcn"],
        "localization_slices": run_info["network_evaluations"]["localization_slices"],
        "vertebrae": vertebrae,
        "process_peak_rss_mb": round(peak_rss_mb(), 1),
        "baseline_rss_mb": round(memory.baseline_rss_mb, 1),
        "peak_rss_mb": round(max(memory.rss_mb.values()), 1),
        "stage_peak_rss_mb": memory.rss_mb,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU",
        "threads": torch.get_num_threads(),
        "setup_seconds": round(setup_seconds, 3),
        "runs_seconds": [round(v, 3) for v in totals],
    }
    flops = fcn_flops(model) * row["fcn_evaluations"]
    traversal_seconds = run_info["stage_seconds"].get("traversal", 0.0)
    row["traversal_gflop"] = round(flops / 1e9, 1)
    row["traversal_gflop_per_second"] = round(flops / 1e9 / max(traversal_seconds, 1e-9), 1)
    if device.type == "cuda":
        row["peak_gpu_mb"] = round(max(memory.gpu_mb.values(), default=0.0), 1)
        row["stage_peak_gpu_mb"] = memory.gpu_mb
        peak = next((v for k, v in PEAK_BF16.items() if k in row["device_name"]), None)
        if peak:
            limit = flops / peak
            row["traversal_physical_limit_seconds"] = round(limit, 5)
            row["traversal_over_limit"] = round(traversal_seconds / limit, 1)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cases", nargs="+", default=["shipped", "512x512x300", "long"])
    ap.add_argument("--model", default=None)
    ap.add_argument("--ct", default=str(SHIPPED_CT))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case; the median one is reported")
    ap.add_argument("--surface-refinement", action="store_true",
                    help="apply the 200 HU surface refinement whatever the model's setting")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    if len(args.cases) == 1:
        row = run_case(args.cases[0], Path(args.ct), args.model, device, args.repeat,
                       True if args.surface_refinement else None)
        print("ROW " + json.dumps(row), flush=True)
        rows.append(row)
    else:  # one process per case, so that peak memory is per case
        for case in args.cases:
            cmd = [sys.executable, __file__, "--device", str(args.device), "--cases", case, "--ct", args.ct,
                   "--repeat", str(args.repeat)] + (["--surface-refinement"] if args.surface_refinement else [])
            cmd += (["--model", args.model] if args.model else []) + (["--threads", str(args.threads)] if args.threads else [])
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            row = json.loads(next(line[4:] for line in out.splitlines() if line.startswith("ROW ")))
            print("ROW " + json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(f"{'case':12s} {'size':>14s} {'IO s':>6s} {'total s':>8s} {'traversal s':>11s} {'FCN evals':>9s} "
          f"{'base RSS MB':>11s} {'peak RSS MB':>11s} {'peak GPU MB':>11s} device")
    for r in rows:
        size = "x".join(map(str, r["size"]))
        print(f"{r['case']:12s} {size:>14s} {r['io_read_seconds']:6.2f} {r['pipeline_seconds']:8.2f} "
              f"{r['stage_seconds'].get('traversal', 0):11.2f} {r['fcn_evaluations']:9d} {r['baseline_rss_mb']:11.0f} "
              f"{r['peak_rss_mb']:11.0f} "
              f"{r.get('peak_gpu_mb', float('nan')):11.0f} {r['device_name']}")
        print("    stages (s, peak RSS MB" + (", peak GPU MB" if "stage_peak_gpu_mb" in r else "") + "): " + ", ".join(
            f"{k} {v:.2f}s {r['stage_peak_rss_mb'].get(k, float('nan')):.0f}"
            + (f" {r['stage_peak_gpu_mb'].get(k, float('nan')):.0f}" if "stage_peak_gpu_mb" in r else "")
            for k, v in r["stage_seconds"].items()))
        line = f"    traversal: {r['traversal_gflop']} GFLOP, {r['traversal_gflop_per_second']} GFLOP/s achieved"
        if "traversal_over_limit" in r:
            line += (f", physical limit {r['traversal_physical_limit_seconds']} s at dense bf16 peak "
                     f"({r['traversal_over_limit']}x above it)")
        print(line)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
