"""When the GPU runs out of memory during the traversal: smaller batches, then the CPU, and say so.

The traversal evaluates :data:`pipeline.GPU_SLIDING_BATCH` sliding-window positions per batch on a GPU. On
``torch.cuda.OutOfMemoryError`` it is run again with one window at a time (the same result: the batches only
group evaluations), and if that fails too, on the CPU (the same network in float32; the GPU's bf16 autocast
gives the same vertebrae, see the README). Each step is stated in ``result.run_info["device_fallback"]`` and as a
warning.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

#: (sliding-window batch, device) tried in turn after an out-of-memory error on the GPU.
_FALLBACKS = ((1, "cuda"), (1, "cpu"))


def traverse_with_fallback(scan, first_batch: int, traverse_once: Callable) -> tuple[object, list[str]]:
    """Run ``traverse_once(scan, sliding_batch)``; on GPU out-of-memory retry with the fallbacks.

    Args:
        scan: the :class:`pipeline.Scan`; on the last fallback its ``device`` becomes the CPU and its model moves
            there.
        first_batch: the sliding-window batch of the first try.
        traverse_once: runs the traversal of ``scan`` with a given sliding-window batch.

    Returns:
        ``(traversal result, notes)``: ``notes`` says what fell back (empty when nothing did).

    Raises:
        torch.cuda.OutOfMemoryError: only when the scan was not on a GPU (nothing to fall back from).
    """
    notes: list[str] = []
    batch: Optional[int] = first_batch
    for next_batch, next_device in ((None, None),) + _FALLBACKS:
        if next_device == scan.device.type and next_batch == batch:
            continue  # the try that just failed: a first batch of 1 window goes straight to the CPU
        if next_device is not None:
            batch = next_batch
            if next_device == "cpu":
                scan.device = torch.device("cpu")
                scan.model.to(scan.device)
        try:
            return traverse_once(scan, batch), notes
        except torch.cuda.OutOfMemoryError as exc:
            if scan.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
            notes.append(f"GPU out of memory with batches of {batch} sliding windows ({first_line}); retrying "
                         + ("with one window at a time" if batch != 1 else "on the CPU (slower, same network)"))
    raise RuntimeError("unreachable: the CPU fallback either returns or raises")
