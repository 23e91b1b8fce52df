"""Engines that run :func:`~SpineSegmentationLib.cohort.case_run.run_case` over the cases of a cohort.

Both yield one record per case as the cases finish (any order); the outputs, resume rules and records are the same,
only where the function runs differs:

- :func:`run_local`: one case after the other in this process (the model is loaded once);
- :func:`run_ray`: one Ray task per case (Ray core), each with ``num_cpus`` / ``num_gpus`` from the options, on a
  local Ray instance of ``workers`` x ``num_cpus`` CPUs started here, or on an existing cluster (``address``, e.g.
  ``"auto"`` on a cluster node or ``"ray://head:10001"``). Each Ray worker process loads the model once and keeps it
  for its following tasks. On a cluster every node must see the inputs, the output folder and the model at the same
  paths (a shared file system) and have this library installed; the tasks import it from the folder the driver
  imported it from (``PYTHONPATH`` of the tasks' runtime environment).

Ray is an optional dependency (``pip install ".[cohort]"``); without it :func:`run_ray` says how to install it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from ..errors import SpineSegmentationError
from .case_run import CaseOptions, case_record, run_case
from .cases import Case

#: The command that installs the Ray engine's dependency.
RAY_INSTALL_HINT = 'pip install ".[cohort]" (in the SpineSegmentation checkout) or pip install "ray>=2.9"'

__all__ = ["RAY_INSTALL_HINT", "check_local_ray_gpus", "local_ray_resources", "run_local", "run_ray"]


def run_local(cases: Sequence[Case], output_root: Path, options: CaseOptions,
              started: Optional[Callable[[Case], None]] = None) -> Iterator[dict]:
    """Run the cases one after the other in this process; yields each case's record.

    ``started(case)`` is called before each case (the progress display shows the current case)."""
    for case in cases:
        if started is not None:
            started(case)
        yield run_case(case, output_root, options)


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise SpineSegmentationError(f"--engine ray needs Ray, which is not installed ({exc}); install it with "
                                     f"{RAY_INSTALL_HINT}") from exc
    return ray


def local_ray_resources(workers: int, num_cpus: float, num_gpus: float) -> tuple[int, int]:
    """(CPUs, GPUs) of a local Ray instance that runs ``workers`` tasks of ``num_cpus`` / ``num_gpus`` each at once:
    the products rounded up (at least 1 CPU), so that a fractional request (``--num-gpus 0.5``) still finds a GPU
    instead of waiting forever for one."""
    return max(1, math.ceil(workers * num_cpus)), math.ceil(workers * num_gpus)


def check_local_ray_gpus(workers: int, num_gpus: float) -> None:
    """Refuse GPUs that a local Ray instance would be told of (:func:`local_ray_resources`) but that PyTorch does not
    find here: Ray takes the count it is given, so its tasks would get GPU numbers that do not exist and the cases
    would run on the CPU (``--device auto``) or fail (``cuda``), none of it said before the cohort ran.

    Raises:
        SpineSegmentationError: ``workers`` x ``num_gpus``, rounded up, is more than the CUDA GPUs PyTorch finds here.
    """
    needed = local_ray_resources(workers, 1, num_gpus)[1]
    if needed == 0:
        return
    import torch

    found = torch.cuda.device_count()
    if needed > found:
        raise SpineSegmentationError(
            f"--num-gpus {num_gpus:g} with --workers {workers} asks the local Ray instance for {needed} "
            f"GPU{'s' if needed != 1 else ''}, and PyTorch finds {found} CUDA GPU{'s' if found != 1 else ''} here: "
            "the cases would not run on them; ask for at most that many in all (--workers x --num-gpus), leave "
            "--num-gpus out to run the cases on the CPU, or give the --address of a Ray cluster with GPUs")


def run_ray(cases: Sequence[Case], output_root: Path, options: CaseOptions, *, address: Optional[str] = None,
            workers: int = 1, num_cpus: float = 1, num_gpus: float = 0) -> Iterator[dict]:
    """Run one Ray task per case; yields each case's record as its task finishes.

    Args:
        address: Ray cluster to connect to; None starts a local Ray instance with ``workers * num_cpus`` CPUs
            (and ``workers * num_gpus`` GPUs), rounded up (:func:`local_ray_resources`), and stops it at the end.
        workers: cases run at once on the local instance (ignored with ``address``: the cluster's resources
            decide).
        num_cpus, num_gpus: resources of each task (Ray schedules a task where they are free).

    A task whose worker dies (killed for memory, node lost) gives a ``failed`` record with Ray's error.

    Raises:
        SpineSegmentationError: Ray is not installed, or the cluster at ``address`` cannot be reached.
    """
    ray = _import_ray()
    library_parent = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (library_parent, os.environ.get("PYTHONPATH", "")) if p)
    runtime_env = {"env_vars": {"PYTHONPATH": python_path}}
    if address:
        try:
            ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING")
        except (ConnectionError, SystemExit) as exc:  # Ray 2.60 exits (SystemExit 15) when the GCS is unreachable
            raise SpineSegmentationError(
                f"cannot connect to the Ray cluster at {address!r} ({exc}); start it (ray start --head) or give its "
                "address, e.g. --address auto on a cluster node or --address ray://HEAD:10001"
            ) from exc
    else:
        cpus, gpus = local_ray_resources(workers, num_cpus, num_gpus)
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, runtime_env=runtime_env,
                 logging_level="WARNING")
    try:
        task = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(run_case)
        pending = {task.remote(case, str(output_root), options): case for case in cases}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            case = pending.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died; run_case itself never raises
                yield case_record(case, error=f"{type(exc).__name__}: {exc}")
    finally:
        ray.shutdown()
