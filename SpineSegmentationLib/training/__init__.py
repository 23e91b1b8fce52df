"""Training of the iterative FCN and the attention network: data readers, synthetic CT, patch sampler,
losses, augmentation and the training loop (seed 002 section 3.6, seed 001 section 2.1).

Entry point: :func:`train` (the ``spineseg train`` command).
"""

from __future__ import annotations

import importlib.util

from ..errors import SpineSegmentationError


def train(config, output_dir, resume: bool = False, device: str = "auto", **kwargs):
    """Train a model; see :func:`SpineSegmentationLib.training.trainer.train`.

    Raises:
        SpineSegmentationError: TorchIO (the training patches' augmentation) is not installed; the message says how
            to install it. Segmenting does not need it, so ``pip install -e .`` leaves it out.
    """
    if importlib.util.find_spec("torchio") is None:
        raise SpineSegmentationError(
            "training needs TorchIO for the augmentation of its patches, which a plain `pip install -e .` leaves "
            "out: install it with `pip install -e \".[train]\"` (or `pip install torchio`)")
    from .trainer import train as _train

    return _train(config, output_dir, resume=resume, device=device, **kwargs)


__all__ = ["train"]
