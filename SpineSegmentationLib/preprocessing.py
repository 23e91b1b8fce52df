"""Intensity normalization shared by inference and training (one definition, so they cannot drift)."""

from __future__ import annotations

import numpy as np

from .models import Preprocessing


def normalize_hu(hu: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """HU -> network input: ``(clip(hu, *prep.hu_window) - prep.hu_offset) / prep.hu_scale``, float32.

    Works on any array shape; the default window (-1000, 3000) HU and scale 1000 map air to -1, water to 0
    and dense cortical bone to about 1-2.
    """
    lo, hi = prep.hu_window
    return ((np.clip(hu, lo, hi) - prep.hu_offset) / prep.hu_scale).astype(np.float32)


def pad_value(prep: Preprocessing) -> float:
    """Normalized value of air (-1024 HU clipped to the window): what patches outside the image contain."""
    return float(normalize_hu(np.array([-1024.0]), prep)[0])
