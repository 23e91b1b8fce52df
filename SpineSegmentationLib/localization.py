"""Spine localization with the 2D sagittal attention network (seed 001, section 2.1).

The CT is resampled to the localization spacing; every n-th sagittal slice goes through the
:class:`~SpineSegmentationLib.networks.AttentionNet`, which predicts the fraction of spine pixels in every
16 x 16 block. The block map is up-sampled onto the canonical grid (linear interpolation), smoothed with a 3D
Gaussian, thresholded and dilated by a margin, then cut to a left-right column around the spine's centre
line (:func:`spine_column`). The result says where traversal starts and which detections are plausible
(``traversal.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from .geometry import AIR_HU, to_canonical
from .models import SpineModel
from .preprocessing import normalize_hu, pad_value

#: Narrow slices define the spine's centre line only in runs at least this long along S-I (ours: longer than a
#: vertebra with its disc, about 35 mm), so that a small blob at an end of the mask cannot pull the line away.
COLUMN_MIN_RUN_MM = 40.0


@dataclass
class SpineLocalization:
    """Where the spine is, on the canonical grid.

    Attributes:
        probability: float32 [z, y, x] smoothed fraction-of-spine map on the canonical grid.
        mask: bool [z, y, x], ``probability >= threshold`` dilated by the margin.
        evaluations: number of sagittal slices evaluated by the network.
    """

    probability: np.ndarray
    mask: np.ndarray
    evaluations: int

    @property
    def found(self) -> bool:
        return bool(self.mask.any())


def sagittal_fraction_map(hu_canonical_loc: np.ndarray, model: SpineModel, device: torch.device) -> tuple[np.ndarray, int]:
    """Attention-network output for every n-th sagittal slice.

    Args:
        hu_canonical_loc: HU array [z, y, x] on the canonical grid at ``localization_spacing_mm``.

    Returns:
        ``(fractions, n_slices)``: fractions has shape [ceil(Z/b), ceil(Y/b), X'] with X' the number of
        evaluated slices (x = 0, n, 2n, ...), b the block size.
    """
    prep, params = model.preprocessing, model.localization
    b = model.attention.config.block
    z, y, x = hu_canonical_loc.shape
    pz, py = (-z) % b, (-y) % b
    volume = normalize_hu(hu_canonical_loc, prep)
    volume = np.pad(volume, ((0, pz), (0, py), (0, 0)), constant_values=pad_value(prep))
    xs = list(range(0, x, params.slice_step))
    slices = np.stack([volume[:, :, i] for i in xs])[:, None]  # (n, 1, Z, Y)
    out = []
    with torch.inference_mode():
        for start in range(0, len(xs), 16):
            batch = torch.from_numpy(np.ascontiguousarray(slices[start : start + 16])).to(device)
            out.append(model.attention(batch)[:, 0].float().cpu().numpy())
    fractions = np.concatenate(out)  # (n, Z/b, Y/b)
    return np.transpose(fractions, (1, 2, 0)), len(xs)


def localize_spine(image: sitk.Image, reference: sitk.Image, model: SpineModel, device: torch.device) -> SpineLocalization:
    """Run the attention network and map its output onto the canonical grid ``reference``.

    Args:
        image: the input CT (HU), any orientation.
        reference: canonical reference grid (``geometry.to_canonical``) the mask is returned on.

    Returns:
        :class:`SpineLocalization` with arrays shaped like ``reference`` ([z, y, x]).

    Parameters (``model.localization``): slice_step (paper: every n-th slice, n = 8 at 1 mm), sigma_mm and
    threshold (paper: tuned on validation data), margin_mm (dilation; ours).
    """
    prep, params = model.preprocessing, model.localization
    loc_spacing = prep.localization_spacing_mm
    hu_loc, loc_ref = to_canonical(image, loc_spacing, AIR_HU)
    fractions, n_slices = sagittal_fraction_map(hu_loc, model, device)
    b = model.attention.config.block
    # The block map as an image: cell (k, j, i) covers b x b pixels in z and y, and one slice in x.
    low = sitk.GetImageFromArray(fractions.astype(np.float32))
    low.SetSpacing((loc_spacing * params.slice_step, loc_spacing * b, loc_spacing * b))
    origin = np.array(loc_ref.GetOrigin()) + np.array([0.0, 0.5 * (b - 1), 0.5 * (b - 1)]) * loc_spacing
    low.SetOrigin(origin.tolist())
    up = sitk.Resample(low, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    spacing = reference.GetSpacing()[0]
    prob = ndimage.gaussian_filter(sitk.GetArrayFromImage(up), sigma=params.sigma_mm / spacing)
    mask = prob >= params.threshold
    if mask.any() and params.margin_mm > 0:
        radius = max(1, int(round(params.margin_mm / spacing)))
        mask = ndimage.binary_dilation(mask, structure=ndimage.generate_binary_structure(3, 1), iterations=radius)
    mask = spine_column(mask, prob, spacing, params.column_half_width_mm, params.column_max_width_mm)
    return SpineLocalization(probability=prob.astype(np.float32), mask=mask, evaluations=n_slices)


def spine_column(
    mask: np.ndarray, probability: np.ndarray, spacing_mm: float, half_width_mm: float, max_width_mm: float
) -> np.ndarray:
    """Cut a spine mask to a left-right column around the spine's centre line.

    The attention network also responds to bone that looks like spine from the side (iliac wings, ribs): there
    the mask widens to the whole pelvis or chest. The spine is narrow, so its centre line is taken from the
    axial slices where the mask is narrow, in runs of at least :data:`COLUMN_MIN_RUN_MM`: per slice, the
    probability-weighted mean left-right position, median-filtered along the superior-inferior axis and
    interpolated (constant beyond the ends) across the wide slices. Everything farther than ``half_width_mm``
    from that line is removed.

    Args:
        mask: bool [z, y, x] = [S, P, L] on an isotropic grid.
        probability: float [z, y, x], the smoothed fraction map the mask was thresholded from.
        spacing_mm: the grid's spacing in mm.
        half_width_mm, max_width_mm: see :class:`~SpineSegmentationLib.models.LocalizationParameters`.

    Returns:
        A new bool mask; ``mask`` itself when no slice is narrow enough to define a centre line.
    """
    xs = np.arange(mask.shape[2])
    present = mask.any(axis=1)  # [z, x]: where each axial slice has mask
    zs = np.flatnonzero(present.any(axis=1))
    widths = np.array([np.ptp(np.flatnonzero(present[z])) + 1 for z in zs]) * spacing_mm
    narrow = zs[widths <= max_width_mm]
    if narrow.size == 0:
        return mask
    # runs of consecutive narrow slices; short ones are stray blobs at the mask's ends, not the spine
    runs = np.split(narrow, np.flatnonzero(np.diff(narrow) > 1) + 1)
    long_runs = [r for r in runs if r.size * spacing_mm >= COLUMN_MIN_RUN_MM]
    narrow = np.concatenate(long_runs) if long_runs else max(runs, key=len)
    weights = np.where(mask, probability, 0.0).sum(axis=1)[narrow]  # [narrow z, x]
    centres = (weights * xs).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    centres = ndimage.median_filter(centres, size=5, mode="nearest")
    line = np.interp(np.arange(mask.shape[0]), narrow, centres)  # [z]
    inside = np.abs(xs[None, :] - line[:, None]) <= half_width_mm / spacing_mm  # [z, x]
    return mask & inside[:, None, :]
