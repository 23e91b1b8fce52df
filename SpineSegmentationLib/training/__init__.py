"""Training of the iterative FCN and the attention network: data readers, synthetic CT, patch sampler,
losses, augmentation and the training loop (seed 002 section 3.6, seed 001 section 2.1).

Entry point: :func:`train` (the ``spineseg train`` command).
"""

from __future__ import annotations


def train(config, output_dir, resume: bool = False, device: str = "auto", **kwargs):
    """Train a model; see :func:`SpineSegmentationLib.training.trainer.train`."""
    from .trainer import train as _train

    return _train(config, output_dir, resume=resume, device=device, **kwargs)


__all__ = ["train"]
