"""The low-resolution 2D sagittal attention network of Sekuboyina et al. 2017 (seed 001, section 2.1).

It maps a sagittal slice to the fraction of spine voxels in every ``block x block`` region of that slice
(paper: 16 x 16 blocks on every n-th sagittal slice, mean-squared-error training). The fraction map,
up-sampled, Gaussian-smoothed and thresholded, says where the spine is (``localization.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .iterative_fcn import _conv_block, check_count


@dataclass(frozen=True)
class AttentionNetConfig:
    """Architecture of :class:`AttentionNet`.

    Attributes:
        filters: filters of every convolution.
        pool_levels: number of 2x max-pool steps; the output block is ``2 ** pool_levels`` pixels
            (paper: 16 x 16 blocks -> 4).

    Raises:
        ValueError: ``filters`` not a whole number >= 1 or ``pool_levels`` not one >= 0; the message names the setting
            and the value.
    """

    filters: int = 16
    pool_levels: int = 4

    def __post_init__(self) -> None:
        check_count("AttentionNetConfig", "filters", self.filters, 1, "filters of each convolution")
        check_count("AttentionNetConfig", "pool_levels", self.pool_levels, 0,
                    "2x max-pool steps: an output cell is 2 ** pool_levels pixels, the paper's 4")

    @property
    def block(self) -> int:
        """Edge length, in input pixels, of one output cell."""
        return 2**self.pool_levels

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AttentionNetConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown AttentionNet configuration keys: {sorted(unknown)}")
        return cls(**d)


class AttentionNet(nn.Module):
    """Sagittal slice -> fraction-of-spine map.

    Shapes:
        input: (N, 1, H, W) normalized sagittal slices, H and W divisible by ``config.block``
            (axis order of the slice: H = superior-inferior axis, W = anterior-posterior axis).
        output: (N, 1, H / block, W / block), values in [0, 1] (sigmoid): the predicted fraction of spine
            pixels in each block.

    Raises:
        ValueError: (in ``forward``) an input that is not (N, 1, H, W), or H or W not divisible by the block.
    """

    def __init__(self, config: AttentionNetConfig = AttentionNetConfig()) -> None:
        super().__init__()
        self.config = config
        f = config.filters
        stages = [_conv_block(1, f, dims=2)]
        for _ in range(config.pool_levels):
            stages += [nn.MaxPool2d(2), _conv_block(f, f, dims=2)]
        self.features = nn.Sequential(*stages)
        self.head = nn.Conv2d(f, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"expected input of shape (N, 1, H, W), got {tuple(x.shape)}")
        b = self.config.block
        if x.shape[2] % b or x.shape[3] % b:
            raise ValueError(f"slice size {tuple(x.shape[2:])} must be divisible by the block size {b}; pad it")
        return torch.sigmoid(self.head(self.features(x)))
