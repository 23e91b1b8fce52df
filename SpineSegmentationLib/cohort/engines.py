"""Engines that run :func:`~SpineSegmentationLib.cohort.case_run.run_case` over the cases of a cohort.

Both yield one record per case as the cases finish (any order); the outputs, resume rules and records are the same,
only where the function runs differs:

- :func:`run_local`: one case after the other in this process (the model is loaded once);
- :func:`run_ray` (:class:`RayEngine`): one Ray task per case (Ray core), each with ``num_cpus`` / ``num_gpus``
  from the options, on a local Ray instance of ``workers`` x ``num_cpus`` CPUs started here, or on an existing
  cluster (``address``, e.g. ``"auto"`` on a cluster node or ``"ray://head:10001"``). Without ``num_gpus`` each task
  is given a share of the GPUs where there are some (:func:`ray_gpus_per_task`). The worker process of a task
  without a GPU loads the model once and keeps it for its following tasks. A GPU task's worker is ended by Ray after
  each task (Ray's ``max_calls`` defaults to 1 for tasks given GPUs, so that GPU memory held by a library is given
  back): each GPU case starts a worker process and loads the model afresh, a cost per case (import of the library
  and torch, model file read, CUDA set-up; not measured: no GPU where this was written) that ``max_calls`` above 1
  would save at the risk of GPU memory kept between cases. Ray's default is kept. A task given no GPU runs its case on
  the CPU (:func:`ray_task_options`). On a cluster every node must see the inputs, the output folder and the model at
  the same paths (a shared file system) and have this library installed; the tasks import it from the folder the
  driver imported it from (``PYTHONPATH`` of the tasks' runtime environment).

Ray is an optional dependency (``pip install ".[cohort]"``); without it :func:`run_ray` says how to install it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from ..errors import SpineSegmentationError
from .case_run import CaseOptions, case_record, run_case
from .cases import Case

#: The command that installs the Ray engine's dependency.
RAY_INSTALL_HINT = 'pip install ".[cohort]" (in the SpineSegmentation checkout) or pip install "ray>=2.9"'

#: Precision of Ray's resource quantities (fractions of a GPU are kept to 4 decimals).
_RAY_RESOURCE_STEP = 10_000

__all__ = ["RAY_INSTALL_HINT", "RayEngine", "RayTasks", "check_local_ray_gpus", "check_ray", "local_ray_resources",
           "plan_ray_tasks", "ray_gpus_per_task", "ray_task_options", "run_local", "run_ray"]


def run_local(cases: Sequence[Case], output_root: Path, options: CaseOptions,
              started: Optional[Callable[[Case], None]] = None) -> Iterator[dict]:
    """Run the cases one after the other in this process; yields each case's record.

    ``started(case)`` is called before each case (the progress display shows the current case)."""
    for case in cases:
        if started is not None:
            started(case)
        yield run_case(case, output_root, options)


def check_ray():
    """Ray for :func:`run_ray`, checked before a batch touches its output folder.

    Returns:
        The ``ray`` module, imported and not yet started in this process.

    Raises:
        SpineSegmentationError: Ray is not installed (names the install command), or it is already started in this
            process (``ray.init`` called before, e.g. in a notebook): :func:`run_ray` starts or connects its own Ray
            instance, with the tasks' ``PYTHONPATH``, and ends it when the batch is over.
    """
    try:
        import ray
    except ImportError as exc:
        raise SpineSegmentationError(f"--engine ray needs Ray, which is not installed ({exc}); install it with "
                                     f"{RAY_INSTALL_HINT}") from exc
    if ray.is_initialized():
        raise SpineSegmentationError(
            "Ray is already started in this process (ray.init was called), and the Ray engine starts (or connects "
            "to) its own Ray and ends it when the batch is over: call ray.shutdown() first (and give a cluster's "
            "address as address=...), or run spineseg batch in a process of its own")
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
            "--num-gpus out (a share of the GPUs found), give --num-gpus 0 to run the cases on the CPU, or give the "
            "--address of a Ray cluster with GPUs")


def ray_gpus_per_task(num_gpus: Optional[float], device: str, gpus: float, *, workers: int = 1,
                      cluster: bool = False) -> tuple[float, str]:
    """GPUs of each Ray task, and a line for the user that says the choice made (else ""), from the ``gpus`` there are.

    ``num_gpus`` given (not None) is kept, and ``device`` "cpu" gives 0. Otherwise (``--num-gpus`` not given, device
    auto or cuda) each task is given a share of the GPUs: on a local Ray instance (``cluster`` False, ``gpus`` the CUDA
    GPUs PyTorch finds here) 1 where ``workers`` <= ``gpus``, else 1/k with k = ceil(``workers`` / ``gpus``) tasks per
    GPU (rounded down to Ray's 4 decimals: --workers 2 on one GPU gives 0.5 each, --workers 3 on two GPUs 0.5 each, so
    that the ``workers`` tasks fit on them at once, within :func:`check_local_ray_gpus`); on a cluster (``gpus`` its
    ``GPU`` resource) 1 where it has GPUs; 0, the CPU, where there are none.

    Raises:
        SpineSegmentationError: ``device`` "cuda" or "cuda:N" with ``num_gpus`` not given and no GPU there.
    """
    if num_gpus is not None:
        return num_gpus, ""
    device = device.strip().lower()
    if device == "cpu":
        return 0.0, ""
    where = "the Ray cluster has" if cluster else "PyTorch finds"
    if gpus <= 0:
        if device != "auto":
            raise SpineSegmentationError(
                f"--device {device} runs every case on a GPU, and {where} no GPU{'' if cluster else ' here'}: give "
                "--device cpu or auto (the CPU then), " + ("or the --address of a Ray cluster with GPUs" if not cluster
                                                           else "or the --address of another cluster"))
        return 0.0, (f"{where} no GPU{'' if cluster else ' here'}, so each Ray task is given none and its case runs "
                     "on the CPU")
    if cluster:
        share = 1.0
        why = f"the Ray cluster has {gpus:g} GPU{'s' if gpus != 1 else ''}"
    else:
        share = 1.0 / math.ceil(workers / gpus) if workers > gpus else 1.0
        share = math.floor(share * _RAY_RESOURCE_STEP) / _RAY_RESOURCE_STEP
        why = f"PyTorch finds {gpus:g} GPU{'s' if gpus != 1 else ''} here for --workers {workers}"
    return share, (f"each Ray task is given {share:g} GPU ({why}; --num-gpus not given): give --num-gpus to choose "
                   "another share, or --num-gpus 0 to run the cases on the CPU")


def ray_task_options(options: CaseOptions, num_gpus: float, *, default_share: bool = False) -> CaseOptions:
    """The options each Ray task of ``num_gpus`` GPUs runs its case with: ``options``, with ``device`` "auto" made
    "cpu" for a task given no GPU. ``default_share``: ``num_gpus`` was decided (:func:`ray_gpus_per_task`), not
    given; the messages say so (a share decided is 0 only where there is no GPU, and a CUDA device is refused then by
    :func:`ray_gpus_per_task`).

    Ray makes a task's GPUs visible to it (``CUDA_VISIBLE_DEVICES``, numbered from 0 in the task) only when it gives
    it some. A task of ``num_gpus`` 0 saw none in earlier Ray versions (``CUDA_VISIBLE_DEVICES`` set empty); since
    ray-project/ray#62492 (Ray 2.60 here; ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO=1`` restores the old way) it sees every
    GPU of its node, so with "auto" every such task would run on the node's first GPU, which Ray does not count as
    used (several tasks at once there, out of GPU memory, or beside another job's tasks).

    Raises:
        SpineSegmentationError: ``num_gpus`` above 0 with device "cpu" (GPUs held and not used); a CUDA device with
            ``num_gpus`` 0 (the tasks are given no GPU); "cuda:N" with N not below ``num_gpus`` rounded up (the GPUs
            a task sees are its own, numbered from 0). Each names the fix.
    """
    device = options.device.strip().lower()
    given = (f"given {num_gpus:g} GPU{'s' if num_gpus != 1 else ''} (the default share, --num-gpus not given)"
             if default_share else f"of --num-gpus {num_gpus:g}")
    if num_gpus > 0 and device == "cpu":
        raise SpineSegmentationError(f"--device cpu runs every case on the CPU, and --num-gpus {num_gpus:g} would hold "
                                     "GPUs for each Ray task that it does not use: leave --num-gpus out, or give "
                                     "--device auto or cuda")
    if (device == "cuda" or device.startswith("cuda:")) and num_gpus == 0:
        raise SpineSegmentationError(
            f"--device {options.device} runs every case on a GPU, and each Ray task is given none (--num-gpus 0): Ray "
            "would not count the GPU as used and run several cases on it at once. Leave --num-gpus out (a GPU per "
            "task where there are GPUs), give --num-gpus 1 (or a share, e.g. 0.5 for two cases per GPU), or run the "
            "cases on the CPU with --device cpu")
    if device.startswith("cuda:"):
        seen = math.ceil(num_gpus)
        index = device[len("cuda:"):]
        if not index.isdigit() or int(index) >= seen:
            raise SpineSegmentationError(
                f"--device {options.device}: a Ray task {given} sees {seen} GPU"
                f"{'s' if seen != 1 else ''}, its own, numbered from 0 in the task (cuda:0"
                f"{f' to cuda:{seen - 1}' if seen > 1 else ''}), whatever their numbers on the machine: give "
                "--device cuda (the task's GPU) or auto")
    return dataclasses.replace(options, device="cpu") if num_gpus == 0 and device == "auto" else options


@dataclasses.dataclass(frozen=True)
class RayTasks:
    """What each Ray task of a batch is given, and the options its case runs with (:func:`plan_ray_tasks`).

    Attributes:
        num_cpus: CPUs of each task.
        num_gpus: GPUs of each task (``--num-gpus``, or the share decided).
        options: the options of every case as each task runs it (:func:`ray_task_options`).
        note: the line that says the share decided ("" where ``--num-gpus`` was given or the device is "cpu").
    """

    num_cpus: float
    num_gpus: float
    options: CaseOptions
    note: str = ""


def plan_ray_tasks(options: CaseOptions, num_gpus: Optional[float], *, workers: int = 1, num_cpus: float = 1,
                   cluster_gpus: Optional[float] = None) -> RayTasks:
    """The :class:`RayTasks` of a batch, on a local Ray instance (``cluster_gpus`` None: the GPUs are the CUDA GPUs
    PyTorch finds here) or on a cluster with ``cluster_gpus`` GPUs (its ``GPU`` resource; not used where
    ``num_gpus`` is given): the GPUs of each task (:func:`ray_gpus_per_task`), checked against the GPUs here
    (:func:`check_local_ray_gpus`, local instance and ``num_gpus`` given; a share decided always fits), and the
    options of each task (:func:`ray_task_options`).

    Raises:
        SpineSegmentationError: as :func:`ray_gpus_per_task`, :func:`check_local_ray_gpus` and
            :func:`ray_task_options`; each names the fix.
    """
    local = cluster_gpus is None
    if local and num_gpus is None and options.device.strip().lower() != "cpu":
        import torch

        gpus: float = torch.cuda.device_count()
    else:
        gpus = cluster_gpus or 0
    share, note = ray_gpus_per_task(num_gpus, options.device, gpus, workers=workers, cluster=not local)
    if local and num_gpus is not None:
        check_local_ray_gpus(workers, num_gpus)
    return RayTasks(num_cpus, share, ray_task_options(options, share, default_share=num_gpus is None), note)


class RayEngine:
    """A Ray instance started here (``address`` None) or the cluster at ``address``, connected to on creation, with
    the resources and options of each task decided (:func:`plan_ray_tasks`): :meth:`run` runs the cases on it,
    :meth:`close` (or the end of a ``with`` block, or of :meth:`run`) ends it. :func:`.batch.run_batch` makes it
    before the output folder, so that a cluster that cannot be reached leaves no folder behind.

    Args:
        options: options of every case; each task's are :attr:`task_options`.
        address, workers, num_cpus, num_gpus: as for :func:`run_ray` (``num_gpus`` None: decided here).
        tasks: the :class:`RayTasks` planned already by the caller (:func:`plan_ray_tasks`, as
            :func:`.batch.check_engine_settings` does for a local instance, or for a cluster with ``num_gpus``
            given), which ``options``, ``num_cpus`` and ``num_gpus`` must match; None: planned here.

    Attributes:
        num_cpus: CPUs of each task.
        num_gpus: GPUs of each task (``num_gpus``, or the share decided).
        note: the line that says the share decided ("" where ``num_gpus`` was given or ``device`` is "cpu").
        task_options: :func:`ray_task_options` of ``options`` and :attr:`num_gpus`.

    Raises:
        SpineSegmentationError: Ray is not installed or already started here (:func:`check_ray`), more GPUs asked of
            the local instance than PyTorch finds here (:func:`check_local_ray_gpus`), the cluster at ``address``
            cannot be reached, ``options.device`` "cuda" with no GPU there (:func:`ray_gpus_per_task`), or a device
            that does not go with the GPUs of each task (:func:`ray_task_options`): all before Ray starts or
            connects, except the last two on a cluster with ``num_gpus`` None (its GPUs are known once connected),
            raised after Ray is ended.
    """

    def __init__(self, options: CaseOptions, *, address: Optional[str] = None, workers: int = 1,
                 num_cpus: float = 1, num_gpus: Optional[float] = None, tasks: Optional[RayTasks] = None):
        if tasks is None and (not address or num_gpus is not None):  # decided before Ray starts or connects
            tasks = plan_ray_tasks(options, num_gpus, workers=workers, num_cpus=num_cpus,
                                   cluster_gpus=0 if address else None)
        ray = check_ray()
        library_parent = str(Path(__file__).resolve().parents[2])
        python_path = os.pathsep.join(p for p in (library_parent, os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {"PYTHONPATH": python_path}}
        if not address:
            cpus, gpus = local_ray_resources(workers, tasks.num_cpus, tasks.num_gpus)
            ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, runtime_env=runtime_env,
                     logging_level="WARNING")
        else:
            try:
                ray.init(address=address, runtime_env=runtime_env, logging_level="WARNING")
            except (ConnectionError, SystemExit) as exc:  # Ray 2.60 exits (SystemExit 15) when the GCS is unreachable
                raise SpineSegmentationError(
                    f"cannot connect to the Ray cluster at {address!r} ({exc}); start it (ray start --head) or give "
                    "its address, e.g. --address auto on a cluster node or --address ray://HEAD:10001"
                ) from exc
        self._ray = ray
        if tasks is None:  # the share of a cluster's GPUs: known once connected
            try:
                tasks = plan_ray_tasks(options, None, num_cpus=num_cpus,
                                       cluster_gpus=ray.cluster_resources().get("GPU", 0))
            except BaseException:
                self.close()
                raise
        self.num_cpus = tasks.num_cpus
        self.num_gpus = tasks.num_gpus
        self.note = tasks.note
        self.task_options = tasks.options

    def run(self, cases: Sequence[Case], output_root: Path) -> Iterator[dict]:
        """One Ray task per case; yields each case's record as its task finishes, and ends Ray at the end (or when
        the iterator is closed). A task whose worker dies (killed for memory, node lost) gives a ``failed`` record
        with Ray's error."""
        ray = self._ray
        if ray is None:
            raise SpineSegmentationError("this Ray engine is closed: make another to run more cases")
        try:
            task = ray.remote(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)(run_case)
            pending = {task.remote(case, str(output_root), self.task_options): case for case in cases}
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                case = pending.pop(ref)
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died; run_case itself never raises
                    yield case_record(case, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.close()

    def close(self) -> None:
        """End the local Ray instance, or disconnect from the cluster (again: nothing)."""
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def run_ray(cases: Sequence[Case], output_root: Path, options: CaseOptions, *, address: Optional[str] = None,
            workers: int = 1, num_cpus: float = 1, num_gpus: Optional[float] = None) -> Iterator[dict]:
    """Run one Ray task per case (:class:`RayEngine`); yields each case's record as its task finishes.

    Args:
        address: Ray cluster to connect to; None starts a local Ray instance with ``workers * num_cpus`` CPUs
            (and ``workers * num_gpus`` GPUs), rounded up (:func:`local_ray_resources`), and stops it at the end.
        workers: cases run at once on the local instance (ignored with ``address``: the cluster's resources
            decide).
        num_cpus, num_gpus: resources of each task (Ray schedules a task where they are free); ``num_gpus`` None:
            a share of the GPUs there are (:func:`ray_gpus_per_task`). The device of each case is the task's
            (:func:`ray_task_options`: the CPU for ``num_gpus`` 0).

    A task whose worker dies (killed for memory, node lost) gives a ``failed`` record with Ray's error.

    Raises:
        SpineSegmentationError: as :class:`RayEngine` (Ray missing or already started here, the cluster at
            ``address`` cannot be reached, ``options.device`` that does not go with ``num_gpus``), at the first
            record asked for.
    """
    yield from RayEngine(options, address=address, workers=workers, num_cpus=num_cpus, num_gpus=num_gpus).run(
        cases, output_root)  # RayEngine.run ends Ray when it ends or is closed
