"""The torch thread count of one piece of work is given back to the caller afterwards (it is process-wide)."""

from __future__ import annotations

import pytest
import torch

from SpineSegmentationLib.threads import torch_threads


def test_the_block_runs_on_its_threads_and_the_callers_count_comes_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError, match="inside"):
            with torch_threads(1):
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        with torch_threads(None):  # None leaves the setting alone
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
