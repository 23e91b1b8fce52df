"""Training data and loop of the sagittal attention network (seed 001, section 2.1).

Targets: for every ``slice_step``-th sagittal slice of a canonical volume resampled to
``localization_spacing_mm``, the fraction of spine (vertebra) voxels in each ``block x block`` (16 x 16) region.
A sagittal slice is ``array[:, :, x]`` of the canonical [S, P, L] array: H = superior-inferior (index grows
superiorly), W = anterior-posterior. Slices are padded at their far ends to multiples of the block with the
normalized air value (target 0 there). Loss: mean squared error.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..anatomy import SACRUM
from ..networks import AttentionNet


def sagittal_examples(image: np.ndarray, labels: np.ndarray, spacing_mm: float, localization_spacing_mm: float,
                      slice_step: int, block: int, pad: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(slice, target) pairs of one volume.

    Args:
        image: normalized float32 [z, y, x] at ``spacing_mm``.
        labels: VerSe labels of the same shape; spine = every vertebra label except the sacrum.

    Returns:
        List of ``(slice (H, W) float32, target (H/block, W/block) float32)``, H and W multiples of ``block``.
    """
    factor = spacing_mm / localization_spacing_mm
    img = ndimage.zoom(image, factor, order=1, mode="nearest")
    spine = ((labels > 0) & (labels != SACRUM)).astype(np.float32)
    frac = np.clip(ndimage.zoom(spine, factor, order=1, mode="nearest"), 0, 1)
    H = -(-img.shape[0] // block) * block
    W = -(-img.shape[1] // block) * block
    out = []
    for x in range(slice_step // 2, img.shape[2], slice_step):
        s = np.full((H, W), pad, dtype=np.float32)
        t = np.zeros((H, W), dtype=np.float32)
        s[: img.shape[0], : img.shape[1]] = img[:, :, x]
        t[: img.shape[0], : img.shape[1]] = frac[:, :, x]
        target = t.reshape(H // block, block, W // block, block).mean(axis=(1, 3))
        out.append((s, target))
    return out


def train_attention(net: AttentionNet, examples: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
                    device: torch.device, max_iterations: int, max_seconds: float, learning_rate: float,
                    slices_per_batch: int, pad: float, progress=print) -> dict:
    """Train ``net`` in place on ``examples`` (Adam, MSE); stops at ``max_iterations`` or ``max_seconds``.

    Slices of one batch are padded to the largest slice in the batch (image: ``pad``, target: 0).

    Returns:
        ``{"iterations", "seconds", "final_loss"}`` (final_loss = mean of the last 50 iterations).

    Raises:
        ValueError: no examples.
    """
    if not examples:
        raise ValueError("no sagittal slices to train the attention network on")
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    block = net.config.block
    start = time.monotonic()
    losses: list[float] = []
    it = 0
    while it < max_iterations and time.monotonic() - start < max_seconds:
        idx = rng.integers(len(examples), size=slices_per_batch)
        H = max(examples[i][0].shape[0] for i in idx)
        W = max(examples[i][0].shape[1] for i in idx)
        xs = np.full((len(idx), 1, H, W), pad, dtype=np.float32)
        ts = np.zeros((len(idx), 1, H // block, W // block), dtype=np.float32)
        for j, i in enumerate(idx):
            s, t = examples[i]
            noise = rng.normal(0, rng.uniform(0, 0.03), size=s.shape).astype(np.float32)
            xs[j, 0, : s.shape[0], : s.shape[1]] = s * rng.uniform(0.9, 1.1) + noise
            ts[j, 0, : t.shape[0], : t.shape[1]] = t
        pred = net(torch.from_numpy(xs).to(device))
        loss = F.mse_loss(pred, torch.from_numpy(ts).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        it += 1
        if it % 50 == 0:
            progress(f"attention net: iteration {it}, mse {np.mean(losses[-50:]):.5f}, "
                     f"{time.monotonic() - start:.0f} s")
    net.eval()
    return {"iterations": it, "seconds": time.monotonic() - start, "final_loss": float(np.mean(losses[-50:]))}
