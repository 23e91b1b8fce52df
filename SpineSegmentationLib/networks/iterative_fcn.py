"""The iterative instance-segmentation FCN of Lessmann et al. 2019 (seed 002, sections 3.1-3.5, Figure 1).

One network with three outputs:

* ``S``: the mask of the *next not yet segmented* vertebra in the patch (U-Net-like path with a constant
  number of filters, batch normalization and padding so that the mask has the patch's size; section 3.1);
* ``L``: the anatomical label regressed as one value through a ReLU (1..24 = C1..L5, 0 = no bone;
  section 3.4), computed by a compression path appended to the U-Net's compression path;
* ``C``: the probability that the vertebra is completely visible (sigmoid; section 3.5), same path
  architecture as ``L``.

Input: a 2-channel patch, channel 0 = image, channel 1 = binary instance memory (section 3.2).
"""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn


def check_count(config: str, name: str, value, minimum: int, meaning: str) -> None:
    """Refuse a network setting ``config.name`` that is not a whole number >= ``minimum``.

    Raises:
        ValueError: names the setting, the value, the allowed range and what the setting means.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{config}.{name} must be a whole number >= {minimum} ({meaning}), got {value!r}")


@dataclass(frozen=True)
class IterativeFCNConfig:
    """Architecture of :class:`IterativeFCN`.

    Attributes:
        patch_size: edge length of the cubic patch in voxels. Paper: 128 (at 1 mm, section 3.1). Must be
            divisible by ``2 ** (levels - 1)``.
        filters: constant number of filters of every convolution in the segmentation path. Paper: 84.
        levels: number of resolution levels of the U-Net (paper's Figure 1: 128, 64, 32, 16 -> 4).
        recognition_filters: filters of the two recognition paths (label, completeness). Paper: 48.
        recognition_levels: number of extra conv + max-pool compression steps of each recognition path
            after the U-Net's bottleneck (then global average pooling and one dense layer 48 -> 1).
        normalization: "batch" (the paper's batch normalization) or "instance". The paper trains on single
            patches (section 3.6); with one patch per batch, batch normalization normalizes every patch with its
            own statistics during training but with running averages at inference, which differ badly for
            patches as unlike as ours (measured: Dice 0.25 with running averages vs 0.89 with per-patch
            statistics on the same network). "instance" uses per-patch statistics in training and inference
            alike, i.e. exactly what batch normalization computes during single-patch training, and leaves the
            recognition paths (3^3 and 2^3 voxels, where per-patch statistics erase the signal) unnormalized.

    Raises:
        ValueError: a setting out of its range (whole numbers: ``patch_size``, ``filters``, ``recognition_filters``
            >= 1, ``levels`` >= 2, ``recognition_levels`` >= 0), a ``patch_size`` not divisible by
            ``2 ** (levels - 1)``, or another ``normalization``; the message names the setting and the value.
    """

    patch_size: int = 128
    filters: int = 84
    levels: int = 4
    recognition_filters: int = 48
    recognition_levels: int = 2
    normalization: str = "batch"

    def __post_init__(self) -> None:
        if self.normalization not in ("batch", "instance"):
            raise ValueError(f"normalization must be 'batch' or 'instance', got {self.normalization!r}")
        for name, minimum, meaning in (
                ("patch_size", 1, "the patch's edge in voxels"), ("filters", 1, "filters of each convolution"),
                ("levels", 2, "resolution levels of the U-Net, the paper's 4"),
                ("recognition_filters", 1, "filters of the label and completeness paths"),
                ("recognition_levels", 0, "pooling steps of the label and completeness paths")):
            check_count("IterativeFCNConfig", name, getattr(self, name), minimum, meaning)
        factor = 2 ** (self.levels - 1)
        if self.patch_size % factor:
            raise ValueError(
                f"patch_size {self.patch_size} must be divisible by 2**(levels-1) = {factor}; "
                f"choose e.g. {factor * max(1, round(self.patch_size / factor))}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "IterativeFCNConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown IterativeFCN configuration keys: {sorted(unknown)}")
        return cls(**d)


#: The paper's configuration (seed 002, section 3.1 and Figure 1).
PAPER_CONFIG = IterativeFCNConfig(patch_size=128, filters=84, levels=4, recognition_filters=48)


class IterativeFCNOutput(NamedTuple):
    """Outputs of :class:`IterativeFCN` for a batch of N patches.

    Attributes:
        segmentation_logits: (N, 1, D, H, W) logits of the vertebra mask; ``sigmoid`` gives probabilities.
        label: (N,) regressed anatomical label >= 0 (ReLU), 1..24 = C1..L5, 0 = no bone.
        completeness_logits: (N,) logits; ``sigmoid`` gives the probability of complete visibility.
    """

    segmentation_logits: torch.Tensor
    label: torch.Tensor
    completeness_logits: torch.Tensor


def _norm(kind: str, channels: int, dims: int) -> nn.Module:
    if kind == "instance":
        return (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=True)
    return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(channels)


def _conv_block(in_channels: int, out_channels: int, dims: int = 3, normalization: str = "batch") -> nn.Sequential:
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    return nn.Sequential(
        conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        _norm(normalization, out_channels, dims),
        nn.ReLU(inplace=True),
        conv(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        _norm(normalization, out_channels, dims),
        nn.ReLU(inplace=True),
    )


class _RecognitionPath(nn.Module):
    """Further compression of the bottleneck features into one value (label or completeness path)."""

    def __init__(self, in_channels: int, filters: int, levels: int, normalize: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(levels):
            layers += [nn.MaxPool3d(2, ceil_mode=True), nn.Conv3d(channels, filters, kernel_size=3, padding=1, bias=not normalize)]
            layers += [nn.BatchNorm3d(filters)] if normalize else []
            layers += [nn.ReLU(inplace=True)]
            channels = filters
        self.features = nn.Sequential(*layers)
        self.dense = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(nn.functional.adaptive_avg_pool3d(x, 1), 1)
        return self.dense(x)[:, 0]


class IterativeFCN(nn.Module):
    """Segmentation + label + completeness network (seed 002, Figure 1).

    Args:
        config: architecture; :data:`PAPER_CONFIG` is the paper's.

    Shapes:
        input ``x``: (N, 2, D, H, W) float32, D = H = W = ``config.patch_size``; channel 0 the normalized
        image patch, channel 1 the binary instance memory (0/1).

    Raises:
        ValueError: (in ``forward``) an input that is not (N, 2, D, H, W).

    Example:
        >>> net = IterativeFCN(IterativeFCNConfig(patch_size=32, filters=8, recognition_filters=8))
        >>> out = net(torch.zeros(1, 2, 32, 32, 32))
        >>> tuple(out.segmentation_logits.shape), tuple(out.label.shape)
        ((1, 1, 32, 32, 32), (1,))
    """

    def __init__(self, config: IterativeFCNConfig = PAPER_CONFIG) -> None:
        super().__init__()
        self.config = config
        f = config.filters
        norm = config.normalization
        self.encoders = nn.ModuleList([_conv_block(2 if i == 0 else f, f, normalization=norm) for i in range(config.levels)])
        self.pool = nn.MaxPool3d(2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.decoders = nn.ModuleList([_conv_block(2 * f, f, normalization=norm) for _ in range(config.levels - 1)])
        self.segmentation_head = nn.Conv3d(f, 1, kernel_size=1)
        batch = norm == "batch"
        self.label_path = _RecognitionPath(f, config.recognition_filters, config.recognition_levels, batch)
        self.completeness_path = _RecognitionPath(f, config.recognition_filters, config.recognition_levels, batch)

    def forward(self, x: torch.Tensor) -> IterativeFCNOutput:
        if x.ndim != 5 or x.shape[1] != 2:
            raise ValueError(f"expected input of shape (N, 2, D, H, W), got {tuple(x.shape)}")
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x if i == 0 else self.pool(x))
            skips.append(x)
        bottleneck = skips.pop()
        y = bottleneck
        for decoder in self.decoders:
            y = decoder(torch.cat([self.upsample(y), skips.pop()], dim=1))
        return IterativeFCNOutput(
            segmentation_logits=self.segmentation_head(y),
            label=torch.relu(self.label_path(bottleneck)),
            completeness_logits=self.completeness_path(bottleneck),
        )
