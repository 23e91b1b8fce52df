"""Vertebra label conventions.

The project's internal convention is the VerSe numbering (Sekuboyina et al. 2021, VerSe challenge):
1-7 = C1-C7, 8-19 = T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13.

The iterative FCN regresses the *position in the standard column* (1..24 = C1..L5, 0 = no bone; seed 002
section 3.4). Transitional vertebrae (T13, L6) have no slot of their own in that scale: the label-sequence
refinement (``labeling.py``) places them by allowing one extra vertebra after T12 or after L5.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

# VerSe label -> short name
VERSE_NAMES: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 6)},
    25: "L6",
    26: "S",
    28: "T13",
}
NAME_TO_VERSE: dict[str, int] = {v: k for k, v in VERSE_NAMES.items()}
NAME_TO_VERSE["sacrum"] = 26

T12, L1, L5, L6, SACRUM, T13 = 19, 20, 24, 25, 26, 28

#: Standard column C1..L5 in cranio-caudal order (VerSe numbers 1..24).
STANDARD_COLUMN: tuple[int, ...] = tuple(range(1, 25))

#: Transitional vertebrae: a 13th thoracic (after T12) and a 6th lumbar (after L5) vertebra.
TRANSITIONAL: tuple[int, ...] = (T13, L6)

#: Every level of the column in cranio-caudal order, transitional ones in their place: C1..T12, T13, L1..L5, L6.
COLUMN_ORDER: tuple[int, ...] = (*STANDARD_COLUMN[:T12], T13, *STANDARD_COLUMN[T12:], L6)

#: Column order followed by the sacrum: every VerSe structure the project knows, head to feet.
ANATOMICAL_ORDER: tuple[int, ...] = (*COLUMN_ORDER, SACRUM)

#: The columns the labelling scores (name -> levels, cranio-caudal): the standard one and its transitional variants.
COLUMNS: dict[str, tuple[int, ...]] = {
    "standard": STANDARD_COLUMN,
    "with T13": tuple(v for v in COLUMN_ORDER if v != L6),
    "with L6": (*STANDARD_COLUMN, L6),
    "with T13 and L6": COLUMN_ORDER,
}

#: Most vertebrae a spine has: the longest column (C1-C7, T1-T13, L1-L6).
MAX_COLUMN_LENGTH = max(len(column) for column in COLUMNS.values())


def is_column_vertebra(label: int) -> bool:
    """True for the levels of the column (C1..L5, T13, L6): the labels with a position on the regression scale,
    that traversal segments and the labelling names. False for the sacrum, background and unknown values."""
    return int(label) in COLUMN_ORDER


def column_mask(labels):
    """Bool array: the voxels of ``labels`` (integer array, any shape) that hold a column vertebra."""
    return np.isin(labels, COLUMN_ORDER)


def vertebra_name(label: int) -> str:
    """Short anatomical name ("L1") of a VerSe label.

    Raises:
        ValueError: if ``label`` is not a VerSe vertebra number.
    """
    try:
        return VERSE_NAMES[int(label)]
    except KeyError:
        raise ValueError(
            f"{label} is not a VerSe vertebra label; valid labels are 1-26 and 28 "
            "(1-7 = C1-C7, 8-19 = T1-T12, 20-24 = L1-L5, 25 = L6, 26 = sacrum, 28 = T13)"
        ) from None


def verse_label(name: str) -> int:
    """VerSe label of a short name ("T13" -> 28, "L1" -> 20).

    Raises:
        ValueError: if the name is not a vertebra level.
    """
    key = name.strip().upper() if name.strip().lower() != "sacrum" else "sacrum"
    if key not in NAME_TO_VERSE:
        raise ValueError(f"unknown vertebra level {name!r}; use C1-C7, T1-T13, L1-L6 or sacrum")
    return NAME_TO_VERSE[key]


def column_position(label: int) -> float:
    """Position of a VerSe label on the regression scale of the network (1..24 = C1..L5).

    Transitional vertebrae sit between their neighbours: T13 -> 19.5 (between T12 and L1),
    L6 -> 24.5 (below L5); these are also the network's training targets (``training/sampler.py``). The sacrum is not a traversal target and has no position.

    Raises:
        ValueError: for the sacrum or an unknown label.
    """
    label = int(label)
    if label in STANDARD_COLUMN:
        return float(label)
    if label == T13:
        return (T12 + L1) / 2.0
    if label == L6:
        return L5 + 0.5
    raise ValueError(f"VerSe label {label} ({VERSE_NAMES.get(label, '?')}) has no position on the C1..L5 scale")


#: Labels above every VerSe number and below the TPTBox disc/endplate labels (>= 100, which ``to_verse`` drops): in a
#: map read as VerSe numbers they mean another convention, e.g. TotalSegmentator's 117 structures, whose 1-24 are
#: organs.
FOREIGN_TO_VERSE = (max(ANATOMICAL_ORDER) + 1, 99)


def foreign_verse_labels(labels, most: int = 8) -> str:
    """The values of an integer label array (any shape) that no map in VerSe numbers holds (29-99: a map of another
    convention read as VerSe numbers), listed for a message ("30, 31, ..." after ``most`` of them); "" for none."""
    values = np.unique(np.asarray(labels))
    foreign = [str(int(v)) for v in values[(values >= FOREIGN_TO_VERSE[0]) & (values <= FOREIGN_TO_VERSE[1])]]
    return ", ".join(foreign[:most]) + (", ..." if len(foreign) > most else "")


#: A label map stored as floating point is read as integers when every value lies this close to one.
LABEL_TOLERANCE = 1e-3

#: Share of a floating-point map's voxels holding a value that is no whole number (farther than
#: :data:`LABEL_TOLERANCE` from one) above which it is an intensity image and not a label map resampled with linear
#: interpolation, whose fractions lie only where two labels (or a label and the background) meet. The share alone
#: does not tell them apart below it, so :func:`whole_labels` also reads the value range and :data:`IMAGE_WHOLE_SHARE`.
#: Measured on the real maps and images of shared/data (review 2026-12-07, helper f1), resampled with SimpleITK's
#: linear interpolation 8x finer to 8x coarser: whole label maps 0.2-15% (15%: the TPTBox sub-region crop 8x
#: coarser), maps cropped tight to their labels 5-22%, cropped tight to one vertebra 5-36% (40%: the L1 body of the
#: example map, 5x5x3 voxels after 3x coarser); binary (0/1) masks alike (0.2-36%). CTs scaled to [0, 1]: windowed
#: -1000..1000 HU 63-100%, 0..1000 HU 11-60%, a bone window 150..1500 HU 1.4-21%; MRs 94-100%.
IMAGE_FRACTION_SHARE = 0.5

#: Share of a floating-point map's non-zero voxels holding a whole number below which a map with more than
#: :data:`IMAGE_FRACTION_SHARE` of its voxels no whole number is an intensity image: a label map resampled linearly
#: keeps its labels inside each label (measured as above: 27-79% of its non-zero voxels), an image holds whole
#: numbers only by chance or where a window clips it (CTs and MRs scaled to [0, 1], [0, 100], [0, 255] or
#: standardised: 0-10%).
IMAGE_WHOLE_SHARE = 0.2


def _whole_planes(array: np.ndarray):
    """For each plane of a floating-point ``array`` (along its first axis; bounded memory for a big CT): the plane,
    and where it holds a whole number (within :data:`LABEL_TOLERANCE`; False for NaN and infinity)."""
    for plane in array.reshape(array.shape[0], -1) if array.ndim > 1 else (array,):
        with np.errstate(invalid="ignore"):
            yield plane, np.abs(plane - np.rint(plane)) <= LABEL_TOLERANCE


def fraction_share(array) -> float:
    """The share (0-1) of the voxels of ``array`` (any shape, any dtype) whose value is no whole number: farther than
    :data:`LABEL_TOLERANCE` from one, or NaN or infinite. 0.0 for an integer or an empty array."""
    array = np.asarray(array)
    if array.size == 0 or not np.issubdtype(array.dtype, np.floating):
        return 0.0
    return sum(int(np.count_nonzero(~whole)) for _, whole in _whole_planes(array)) / array.size


def _whole_share_of_nonzero(array: np.ndarray) -> float:
    """The share (0-1) of the non-zero voxels of a floating-point ``array`` (any shape) that hold a whole number
    (within :data:`LABEL_TOLERANCE`); 0.0 when none is non-zero."""
    whole = nonzero = 0
    for plane, is_whole in _whole_planes(array):
        mask = plane != 0
        whole += int(np.count_nonzero(mask & is_whole))
        nonzero += int(np.count_nonzero(mask))
    return whole / nonzero if nonzero else 0.0


def negative_label_value(labels) -> Optional[float]:
    """The lowest value of a label array (any shape, any dtype) where it is negative as a label, else None: an integer
    array's below 0; a floating-point array's below -:data:`LABEL_TOLERANCE` (a value that close to 0, as a float
    resampling leaves, is 0, the background, as :func:`whole_labels` rounds it); NaN is skipped (an array of NaN
    only, or an empty one: None). A label map holds no negative value: an array that does is an intensity image (a
    CT in HU) or a map with a negative 'ignore' label; each reader refuses it with its own message."""
    array = np.asarray(labels)
    floating = np.issubdtype(array.dtype, np.floating)
    if not array.size or (floating and np.isnan(array).all()):
        return None
    lowest = float(np.nanmin(array) if floating else array.min())
    return lowest if lowest < (-LABEL_TOLERANCE if floating else 0) else None


def whole_labels(labels, source: str, fix: Optional[str] = None) -> np.ndarray:
    """The values of a label array as integers: a floating-point map (e.g. resampled with float output) is rounded
    to the nearest integer, not truncated (20.9999 is 21, not 20); an integer array is returned as it is.

    Args:
        labels: label array of any shape.
        source: what it is, for the message (e.g. a file name, "the reference label map").
        fix: what to do, for the message, in place of the fix named below (e.g. "restore it from the run that wrote
            it", where the map is one the caller wrote itself); the diagnosis stays.

    Raises:
        InputImageError: a floating-point map with a value farther than :data:`LABEL_TOLERANCE` from an integer (or
            NaN, infinite). The message names the likely cause and its fix, from the values' range and the share
            of voxels that are no whole number (:func:`fraction_share`):

            - values within [0, 1], more than :data:`IMAGE_FRACTION_SHARE` of the voxels no whole number: an
              intensity image scaled to [0, 1] (give the label map);
            - values within [0, 1], fewer: either such an image (a CT with a narrow window, e.g. 150..1500 HU) or
              a binary (0/1) mask resampled with linear interpolation: both causes and both fixes are named;
            - values above 1 (or below 0): a label map resampled with linear interpolation (resample the original
              with nearest-neighbour), unless more than :data:`IMAGE_FRACTION_SHARE` of the voxels and all but
              :data:`IMAGE_WHOLE_SHARE` of the non-zero ones are no whole number: then an intensity image.

            A floating-point map with a whole number beyond the int32 range (-2147483648..2147483647; numpy's cast
            would turn it into -2147483648, another label), named with the value: no label of a convention read
            here.
    """
    from .errors import InputImageError

    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.floating):
        return array
    values = np.unique(array)
    off = values[~np.isfinite(values) | (np.abs(values - np.rint(values)) > LABEL_TOLERANCE)]
    if off.size:
        examples = ", ".join(f"{v:g}" for v in off[:5]) + (", ..." if off.size > 5 else "")
        share = fraction_share(array)
        finite = values[np.isfinite(values)]
        span = f"from {finite[0]:g} to {finite[-1]:g}" if finite.size else "none finite"
        unit_range = finite.size > 0 and finite[0] >= -LABEL_TOLERANCE and finite[-1] <= 1 + LABEL_TOLERANCE
        image = (f"{source} holds values that are no whole numbers in {share:.0%} of its voxels (values {span}; "
                 f"e.g. {examples}): it is an intensity image, e.g. a CT or MR ")
        not_a_map = ("for a network, not a label map (whose values are whole numbers, 0 the background; a map "
                     "resampled with linear interpolation keeps its labels inside them and has fractions only where "
                     "labels meet)")
        give_the_map = "give the label map (integer labels) in its place"
        if unit_range and share > IMAGE_FRACTION_SHARE:
            raise InputImageError(_with_fix(image + "scaled to [0, 1] " + not_a_map, give_the_map, fix))
        unit_values = (f"{source} holds values between 0 and 1 that are no whole numbers ({examples}) in {share:.1%} "
                       "of its voxels: ")
        if unit_range and fix is not None:
            raise InputImageError(unit_values + "an intensity image scaled to [0, 1] or a binary (0/1) mask resampled "
                                  f"with linear interpolation; {fix}")
        if unit_range:
            raise InputImageError(
                unit_values + "either it is an intensity image scaled to [0, 1] (e.g. a CT with a narrow window such "
                "as 150..1500 HU, which leaves most voxels at 0 or 1): give the label map (integer labels) in its "
                "place; or it is a binary (0/1) mask resampled with linear interpolation (fractions where the mask "
                "meets the background): resample the original mask again with nearest-neighbour interpolation "
                "(e.g. SimpleITK's sitkNearestNeighbor) and save it as integers")
        if share > IMAGE_FRACTION_SHARE and _whole_share_of_nonzero(array) < IMAGE_WHOLE_SHARE:
            raise InputImageError(_with_fix(image + "scaled or standardised " + not_a_map, give_the_map, fix))
        raise InputImageError(_with_fix(
            f"{source} holds label values that are no whole numbers ({examples}) in {share:.1%} of its voxels (as "
            "where two labels or a label and the background meet): it was probably resampled with linear "
            "interpolation", "resample the original map again with nearest-neighbour interpolation (e.g. SimpleITK's "
            "sitkNearestNeighbor) and save it as integers (rounding this one would put wrong labels where labels "
            "meet: between 20 and 22 lies 21)", fix))
    bounds = np.iinfo(np.int32)
    rounded = np.rint(values.astype(np.float64))  # in float32, 2147483647 rounds to 2**31: 2**31 would pass
    beyond = rounded[(rounded < bounds.min) | (rounded > bounds.max)]
    if beyond.size:
        raise InputImageError(_with_fix(
            f"{source} holds the value {beyond[-1] if beyond[-1] > 0 else beyond[0]:.10g}, beyond the whole numbers a "
            f"label map holds ({bounds.min}..{bounds.max}): it is no label map of the conventions read here (VerSe "
            "labels 1-28, TotalSegmentator's up to 117, TPTBox's below 300)", "give the label map (integer labels) in "
            "its place, or set that value to 0, the background, and save the map again", fix))
    return np.rint(array).astype(np.int32)  # exact: a float32 rounding to at most 2147483647 is at most 2147483520


def _with_fix(diagnosis: str, own_fix: str, fix: Optional[str]) -> str:
    """A message of :func:`whole_labels`: ``diagnosis``, then the caller's ``fix`` where given, else ``own_fix``."""
    return f"{diagnosis}; {own_fix if fix is None else fix}"


#: Most distinct values a label map may hold (background included) before it is refused as an image: a map of the
#: numberings read here holds at most about 120 (TotalSegmentator v2 ``total``: 117 labels; VerSe/TPTBox: 1-28 and
#: some 60 of 100 and above), an image hundreds to thousands (example CT: 2598; the T2w cervical MR crop, no negative
#: value: 374; the small TotalSegmentator MR: 832).
MAX_LABEL_VALUES = 250


def distinct_values(array: np.ndarray) -> int:
    """How many distinct values ``array`` (any shape, no negative integer) holds: for integers up to 2**24 marked
    in a table of the values, a plane at a time (no sorted copy of a whole CT), else by ``np.unique``."""
    if array.size == 0:
        return 0
    if np.issubdtype(array.dtype, np.integer) and int(array.max()) < 1 << 24:
        present = np.zeros(int(array.max()) + 1, dtype=bool)
        for plane in array.reshape(array.shape[0], -1):
            present[plane] = True
        return int(np.count_nonzero(present))
    return int(np.unique(array).size)


#: Label conventions that :func:`to_verse` converts (see shared/data/README.md).
CONVENTIONS = ("verse", "totalseg", "totalseg_vertebrae")


def to_verse(labels, convention: str):
    """Convert an integer label array to VerSe numbering; non-vertebra labels become 0.

    Args:
        labels: integer numpy array of any shape.
        convention: "verse" (1-26, 28; values >= 100 such as TPTBox discs/endplates are dropped),
            "totalseg" (TotalSegmentator v2 ``total``: 27..50 = L5..C1, VerSe = 51 - TS; 26 (S1) and 25
            (sacrum) -> 26 sacrum), or "totalseg_vertebrae" (1-24 as VerSe).

    Returns:
        int16 array of the same shape in VerSe numbers.

    Raises:
        ValueError: for an unknown convention.
    """
    a = np.asarray(labels)
    out = np.zeros(a.shape, dtype=np.int16)
    if convention == "verse":
        keep = np.isin(a, ANATOMICAL_ORDER)
        out[keep] = a[keep]
    elif convention == "totalseg":
        vert = (a >= 27) & (a <= 50)
        out[vert] = 51 - a[vert]
        out[(a == 25) | (a == 26)] = SACRUM
    elif convention == "totalseg_vertebrae":
        keep = (a >= 1) & (a <= 24)
        out[keep] = a[keep]
    else:
        raise ValueError(f"unknown label convention {convention!r}; use one of {CONVENTIONS}")
    return out
