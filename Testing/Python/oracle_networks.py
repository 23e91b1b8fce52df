"""Oracle networks for traversal tests: they answer what a perfect iterative FCN would (the next not-yet-segmented
instance in the patch), so that a test checks the traversal and the pipeline around the network, not the network."""

from __future__ import annotations

import torch
from torch import nn

from SpineSegmentationLib.models import LocalizationParameters, Preprocessing, SpineModel, TraversalParameters
from SpineSegmentationLib.networks import AttentionNet, IterativeFCNConfig, IterativeFCNOutput

PATCH = 24
SPACING = 1.0  # v_min = 1000 mm^3 -> 1000 voxels


class InstanceOracle(nn.Module):
    """Image channel holds instance ids (0 = background); segments the lowest (up) or highest (down)
    not-yet-memorized instance in the patch; label = id; complete iff all its voxels are in the patch."""

    def __init__(self, totals: dict[int, int], direction: str = "up", regressed: dict[int, float] | None = None,
                 modulo: int = 0) -> None:
        super().__init__()
        self.config = IterativeFCNConfig(patch_size=PATCH, filters=1, recognition_filters=1)
        self.totals, self.direction = totals, direction
        self.regressed = regressed or {}  # id -> regressed label (default: the id)
        self.modulo = modulo  # ids = intensity modulo this (0: the intensity), so that intensity can encode bone

    def forward(self, x: torch.Tensor) -> IterativeFCNOutput:
        outs = [self._one(x[i]) for i in range(x.shape[0])]
        return IterativeFCNOutput(*(torch.cat(parts) for parts in zip(*outs)))

    def _one(self, x: torch.Tensor):
        ids = torch.round(x[0]).clamp(min=0).long()
        if self.modulo:
            ids = torch.remainder(ids, self.modulo)
        free = (ids > 0) & (x[1] < 0.5)
        seg = torch.full_like(x[None, :1], -10.0)
        label = torch.zeros(1)
        complete = torch.full((1,), -10.0)
        candidates = torch.unique(ids[free])
        if len(candidates):
            z_of = {int(c): torch.nonzero(ids == c)[:, 0].float().mean() for c in candidates}
            pick = (min if self.direction == "up" else max)(z_of, key=z_of.get)
            target = ids == pick
            seg[0, 0][target] = 10.0
            label[0] = self.regressed.get(pick, float(pick))
            complete[0] = 10.0 if int(target.sum()) == self.totals[pick] else -10.0
        return seg, label, complete


class JoiningOracle(InstanceOracle):
    """Answers as :class:`InstanceOracle`, but its mask of vertebra 1 also holds what the patch shows of vertebra 2,
    joined to it behind their disc (what the network drew on the itkelastix chest CT's first vertebra, which the
    scan cuts: T11's body with the lower half of T10's, joined through the arch)."""

    def _one(self, x: torch.Tensor):
        seg, label, complete = super()._one(x)
        ids = torch.round(x[0]).clamp(min=0).long()
        drawn = seg[0, 0] > 0
        following = (ids == 2) & (x[1] < 0.5)
        if drawn.any() and bool((ids[drawn] == 1).all()) and following.any():
            seg[0, 0][following] = 10.0
            z = torch.nonzero(drawn | following)
            back = int(z[:, 1].max())  # a bridge along the back, across the disc
            seg[0, 0][int(z[:, 0].min()) : int(z[:, 0].max()) + 1, back, int(z[:, 2].median())] = 10.0
        return seg, label, complete


def oracle_model(fcn: nn.Module, **traversal) -> SpineModel:
    return SpineModel(
        name="oracle", version="0", modality="CT", preprocessing=Preprocessing(spacing_mm=SPACING),
        traversal=TraversalParameters(**traversal), localization=LocalizationParameters(),
        fcn=fcn, attention=AttentionNet(),
    )
