"""Training patches drawn by worker processes, so that a GPU does not wait for the CPU.

At 2.5 mm a worker on one CPU thread draws about 9 patches/s (a volume picked, posed, augmented, cropped, its instance
memory and targets made; ``Testing/benchmarks/benchmark_patch_workers.py``) and builds a synthetic CT in about 1.5 s; a
GPU takes far less for one training step. Each worker holds its own copy of the training data (forked from the
training process) and its own synthetic pool, which it refreshes as the training process would
(``synthetic_refresh_count`` volumes every ``synthetic_refresh_every`` of its batches, so the whole run makes as many
new synthetic volumes per iteration as one process does). A worker runs torch and ITK (TorchIO's elastic deformation
and anisotropy resample with SimpleITK) on one thread each: by default each would use every core, and a dozen
workers would then oversubscribe the machine.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import SimpleITK as sitk
import torch

from .data import TrainingData
from .sampler import Patch, PatchSampler


class PatchStream(torch.utils.data.IterableDataset):
    """An endless stream of training batches (lists of ``batch_size`` :class:`~.sampler.Patch`), one random
    generator per worker, seeded from ``seed`` and the worker's number.

    Args:
        data: the run's training data (real volumes and synthetic pool).
        sampler: the run's patch sampler (augmentation included).
        batch_size: patches per batch.
        refresh_every, refresh_count: synthetic pool refresh (configuration ``data.synthetic_refresh_*``).
        seed: entropy for the workers' generators, e.g. (configuration seed, iteration the stream starts at), so
            that a resumed run does not draw the same patches again.
    """

    def __init__(self, data: TrainingData, sampler: PatchSampler, batch_size: int, refresh_every: int,
                 refresh_count: int, seed: tuple[int, ...]) -> None:
        self.data, self.sampler, self.batch_size = data, sampler, int(batch_size)
        self.refresh_every, self.refresh_count, self.seed = int(refresh_every), int(refresh_count), tuple(seed)

    def __iter__(self) -> Iterator[list[Patch]]:
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, 0 if info is None else info.id])
        made = 0
        while True:
            yield [self.sampler.sample(self.data.draw(rng), rng) for _ in range(self.batch_size)]
            made += 1
            if self.data.pool and made % self.refresh_every == 0:
                self.data.refresh(rng, self.refresh_count)


def patch_batches(data: TrainingData, sampler: PatchSampler, batch_size: int, refresh_every: int,
                  refresh_count: int, seed: tuple[int, ...], workers: int) -> Iterator[list[Patch]]:
    """Batches from :class:`PatchStream` drawn by ``workers`` (>= 1) processes, four batches ahead each.

    Raises:
        ValueError: ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"patch_batches needs at least one worker process, got {workers}")
    stream = PatchStream(data, sampler, batch_size, refresh_every, refresh_count, seed)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                                         collate_fn=_as_is, worker_init_fn=one_thread_per_worker)
    return iter(loader)


def _as_is(batch: list[Patch]) -> list[Patch]:
    """The batch as the worker made it (the training step converts it to tensors on its device)."""
    return batch


def one_thread_per_worker(_worker_id: int) -> None:
    """ITK on one thread in a worker process (torch's DataLoader already sets torch's to one)."""
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
