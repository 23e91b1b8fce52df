"""The CPU thread count of torch for one piece of work.

``torch.set_num_threads`` is process-wide: a command run in the caller's process (``cli.main``, a local cohort
run, ``training.train``) would otherwise leave its own setting behind for everything that runs after it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch


@contextmanager
def torch_threads(count: Optional[int]) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(count)`` and give the caller back its own count afterwards.

    Args:
        count: threads for the block (1 or more); None or 0 leaves torch's setting as it is.
    """
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
