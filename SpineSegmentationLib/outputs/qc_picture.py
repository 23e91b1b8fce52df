"""``qc.png``: a quality-control picture a person checks at a glance.

Three views through the spine, side by side, on a black background:

- **sagittal** (viewed from the patient's left, as in 3D Slicer and PACS: anterior on the left, posterior on
  the right, head up),
- **coronal** (radiological convention: patient's right on the viewer's left, head up), and
- **ribs**: the coronal view as a maximum-intensity projection of the bone behind the bodies
  (:data:`RIB_SLAB_MM`), where the posterior ribs and their joints with the vertebrae show, so that a person can
  check each level against the ribs (the first rib on T1, the last on T12).

How the views are made:

1. CT and labels are resampled with SimpleITK onto an LPS-aligned isotropic grid
   (:func:`geometry.canonical_reference`; spacing = the input's finest spacing, at least
   :data:`MIN_DISPLAY_SPACING_MM`, coarser if the grid would exceed :data:`MAX_DISPLAY_VOXELS`), so oblique or
   flipped inputs display the right way up with the correct physical aspect ratio.
2. The CT is shown as a **curved thick slab** (mean HU over :data:`SLAB_THICKNESS_MM`) that follows the spine:
   in every axial row the slab is centred on the centroid of the labelled voxels of that row (interpolated
   between rows without labels), so a scoliotic or kyphotic spine stays in the slab. Bone window
   (:data:`BONE_WINDOW`).
3. The labels are shown as a **label projection** along the viewing direction (each pixel gets the label
   with the most voxels along its ray), so every vertebra appears even when the spine curves out of the slab.
   Each vertebra is outlined in its terminology colour and, except in the rib view, filled with it
   (semi-transparent); incompletely visible vertebrae (``complete`` false) are hatched (except in the rib view)
   and named "L5 (incomplete)".
4. Each vertebra's name sits beside it, level with its centroid; orientation letters mark the view edges;
   the title gives the model, its version and the vertebra count.

An empty result (no vertebra) shows the views through the volume centre with "no spine found".
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import SimpleITK as sitk
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from ..geometry import AIR_HU, canonical_reference
from ..result import SpineSegmentationResult
from ..terminology import vertebra_terminology

#: Display window (level, width) in HU: a bone window, narrower than the cortical-bone (400, 1800) one
#: because the slab mean softens bone contrast.
BONE_WINDOW = (300.0, 1400.0)
#: Black band above and below each view (fraction of its height) that holds the S/I letters and names.
BAND_FRACTION = 0.06
#: Thickness of the curved CT slab, mm.
SLAB_THICKNESS_MM = 12.0
#: The rib view's slab along anterior-posterior, mm from the spine's centre line (positive = posterior): from the
#: middle of the bodies to behind the costotransverse joints, where the posterior ribs run beside the column.
RIB_SLAB_MM = (-5.0, 50.0)
#: Finest display spacing, mm (finer inputs are shown at this spacing).
MIN_DISPLAY_SPACING_MM = 1.0
#: Upper bound on the display grid's voxel count (keeps memory and time small for large CTs).
MAX_DISPLAY_VOXELS = 48_000_000
#: Opacity of the label fill.
LABEL_ALPHA = 0.35
#: Widest picture, inches.
MAX_WIDTH_IN = 20.0
#: Output resolution, dots per inch.
DPI = 110

_OUTLINE = [patheffects.withStroke(linewidth=2.5, foreground="black")]


def display_grid(image: sitk.Image) -> sitk.Image:
    """LPS-aligned isotropic reference grid for display (see module docstring, step 1)."""
    spacing = max(min(image.GetSpacing()), MIN_DISPLAY_SPACING_MM)
    lo_extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    n_voxels = np.prod(np.maximum(lo_extent / spacing, 1.0))
    if n_voxels > MAX_DISPLAY_VOXELS:
        spacing *= (n_voxels / MAX_DISPLAY_VOXELS) ** (1.0 / 3.0)
    return canonical_reference(image, spacing)


def _centre_line(present: np.ndarray, coordinate: np.ndarray, default: float) -> np.ndarray:
    """Per-row slab centre: ``coordinate`` where ``present``, linearly interpolated elsewhere."""
    rows = np.arange(len(present))
    if not present.any():
        return np.full(len(present), default)
    return np.interp(rows, rows[present], coordinate[present])


def _slab_mean(ct: np.ndarray, centre: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Mean over a slab of +-``half`` voxels around ``centre[z]`` along ``axis`` (1 = y, 2 = x) of a [z, y, x] array."""
    return _slab(ct, centre, (-half, half), axis, np.mean)


def _slab(ct: np.ndarray, centre: np.ndarray, offsets: tuple[int, int], axis: int, reduce) -> np.ndarray:
    """``reduce`` (np.mean, np.max) over the voxels ``centre[z] + offsets[0]`` to ``centre[z] + offsets[1]``
    (inclusive) along ``axis`` (1 = y, 2 = x) of a [z, y, x] array; one voxel where the slab leaves the array."""
    n = ct.shape[axis]
    out = np.empty((ct.shape[0], ct.shape[3 - axis]), dtype=np.float32)
    for z in range(ct.shape[0]):
        c = int(round(centre[z]))
        lo, hi = max(0, c + offsets[0]), min(n, c + offsets[1] + 1)
        if lo >= hi:
            lo, hi = max(0, min(c, n - 1)), max(0, min(c, n - 1)) + 1
        out[z] = reduce(ct[z, lo:hi, :], axis=0) if axis == 1 else reduce(ct[z, :, lo:hi], axis=1)
    return out


def rib_view(ct: np.ndarray, y_centre: np.ndarray, spacing: float) -> np.ndarray:
    """The rib view ([z, x], HU): maximum over :data:`RIB_SLAB_MM` behind the spine's centre line ``y_centre[z]``
    (voxels) of the canonical [z, y, x] CT ``ct`` on an isotropic grid of ``spacing`` mm."""
    offsets = (int(round(RIB_SLAB_MM[0] / spacing)), int(round(RIB_SLAB_MM[1] / spacing)))
    return _slab(ct, y_centre, offsets, axis=1, reduce=np.max)


def _label_projection(labels: np.ndarray, values: list[int], axis: int) -> np.ndarray:
    """Per pixel, the label with the most voxels along ``axis`` (0 where none)."""
    shape = tuple(s for i, s in enumerate(labels.shape) if i != axis)
    if not values:
        return np.zeros(shape, dtype=np.int16)
    counts = np.stack([(labels == v).sum(axis=axis) for v in values])
    best = counts.argmax(axis=0)
    return np.where(counts.max(axis=0) > 0, np.array(values, dtype=np.int16)[best], 0).astype(np.int16)


#: Font size of the picture's title (points), the height of one title line and the characters that fit in one inch.
_TITLE_POINTS = 11
_TITLE_LINE_IN = 0.2
_TITLE_CHARS_PER_IN = 10.5
#: Space above the views for a one-line title and the view captions (inches).
_TITLE_MARGIN_IN = 0.55


def _wrapped_title(result: SpineSegmentationResult, width_in: float) -> str:
    """The title and the result's message (with its warnings), each line wrapped to the figure's width."""
    lines = [_title(result)] + (result.message.splitlines() if result.message else [])
    width = max(40, int(width_in * _TITLE_CHARS_PER_IN))
    return "\n".join(textwrap.fill(line, width) for line in lines)


def _title(result: SpineSegmentationResult) -> str:
    """Title line: model name and version (from ``run_info``), vertebra count, span and incomplete count."""
    run = result.run_info or {}
    model = run.get("model_name") or run.get("model") or "spineseg"
    version = run.get("model_version") or run.get("version") or ""
    if isinstance(model, dict):  # {"model": {"name": ..., "version": ...}}
        model, version = model.get("name", "spineseg"), model.get("version", version)
    n = len(result.vertebrae)
    head = f"{model} {version}".strip()
    if n == 0:
        return f"{head}: no spine found"
    incomplete = sum(1 for v in result.vertebrae if not v.complete)
    span = f"{result.vertebrae[0].name}\u2013{result.vertebrae[-1].name}" if n > 1 else result.vertebrae[0].name
    extra = f", {incomplete} incomplete" if incomplete else ""
    return f"{head}: {n} vertebra{'e' if n != 1 else ''} ({span}{extra})"


def _draw_view(ax, ct2d, lab2d, spacing, vertebrae, letters, text_rows, text_places, fill=True):
    """One view: CT slab, label fill (unless ``fill`` is False)/outline/hatching, names, orientation letters.
    Rows = z (up = superior).

    Each name is drawn at row ``text_rows[label]`` and the first of ``text_places[label]`` (a list of
    (column in voxels, horizontal alignment)) where it fits inside the view."""
    level, width = BONE_WINDOW
    rows, cols = ct2d.shape
    extent = (0.0, cols * spacing, 0.0, rows * spacing)
    ax.imshow(ct2d, cmap="gray", vmin=level - width / 2, vmax=level + width / 2, origin="lower",
              extent=extent, interpolation="bilinear")
    rgba = np.zeros((rows, cols, 4), dtype=np.float32)
    xs = (np.arange(cols) + 0.5) * spacing
    ys = (np.arange(rows) + 0.5) * spacing
    for v in vertebrae:
        mask = lab2d == v.label
        if not mask.any():
            continue
        colour = vertebra_terminology(v.label).color_rgb
        if fill:
            rgba[mask] = (*colour, LABEL_ALPHA)
        ax.contour(xs, ys, mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8)
        if not v.complete and fill:
            with matplotlib.rc_context({"hatch.color": "white", "hatch.linewidth": 0.9}):
                ax.contourf(xs, ys, mask.astype(np.float32), levels=[0.5, 1.5], colors="none", hatches=["////"])
    ax.imshow(rgba, origin="lower", extent=extent, interpolation="nearest")
    band = BAND_FRACTION * extent[3]
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2] - band, extent[3] + band)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.apply_aspect()
    renderer = ax.figure.canvas.get_renderer()
    view_box = ax.get_window_extent(renderer)
    for v in vertebrae:
        if v.label not in text_rows:
            continue
        name = "sacrum" if v.name == "S" else v.name  # "S" would read as the orientation letter
        name = name if v.complete else f"{name} (incomplete)"
        colour = vertebra_terminology(v.label).color_rgb
        text = ax.text(0.0, (text_rows[v.label] + 0.5) * spacing, name, color="black", fontsize=9,
                       fontweight="bold", va="center", clip_on=True,
                       bbox=dict(boxstyle="round,pad=0.2", facecolor=to_rgba(colour, 0.85), edgecolor="none"))
        for column, align in text_places[v.label]:
            text.set_x(column * spacing)
            text.set_horizontalalignment(align)
            box = text.get_window_extent(renderer)
            if box.x0 >= view_box.x0 and box.x1 <= view_box.x1:
                break
    top_y, bottom_y = 1 - 0.5 * BAND_FRACTION / (1 + 2 * BAND_FRACTION), 0.5 * BAND_FRACTION / (1 + 2 * BAND_FRACTION)
    left, right, top, bottom = letters
    for text, xy in ((left, (0.02, 0.5)), (right, (0.98, 0.5)), (top, (0.5, top_y)), (bottom, (0.5, bottom_y))):
        ax.text(*xy, text, transform=ax.transAxes, color="white", fontsize=13, fontweight="bold",
                ha="center", va="center", path_effects=_OUTLINE)


def write_qc_png(result: SpineSegmentationResult, image: sitk.Image, path: Path) -> None:
    """Draw the QC picture of ``result`` over ``image`` (CT in HU) and save it as PNG to ``path``.

    Args:
        result: segmentation result; ``result.labels`` must be on ``image``'s grid.
        image: the input CT (HU), any direction matrix.
        path: output ``.png`` file.
    """
    grid = display_grid(image)
    spacing = grid.GetSpacing()[0]
    ct = sitk.GetArrayFromImage(
        sitk.Resample(sitk.Cast(image, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, AIR_HU,
                      sitk.sitkFloat32)
    )  # [z, y, x] = [S, P, L]
    labels = sitk.GetArrayFromImage(
        sitk.Resample(result.labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    )
    vertebrae = [v for v in result.vertebrae if (labels == v.label).any()]
    values = [int(v.label) for v in vertebrae]

    fg = labels > 0
    per_row = fg.sum(axis=(1, 2))
    present = per_row > 0
    zz, yy, xx = np.nonzero(fg)
    x_row = np.bincount(zz, weights=xx, minlength=fg.shape[0]) / np.maximum(per_row, 1)
    y_row = np.bincount(zz, weights=yy, minlength=fg.shape[0]) / np.maximum(per_row, 1)
    x_centre = _centre_line(present, x_row, (fg.shape[2] - 1) / 2)
    y_centre = _centre_line(present, y_row, (fg.shape[1] - 1) / 2)
    half = max(1, int(round(SLAB_THICKNESS_MM / 2 / spacing)))

    sagittal_ct = _slab_mean(ct, x_centre, half, axis=2)  # [z, y]: columns anterior -> posterior
    coronal_ct = _slab_mean(ct, y_centre, half, axis=1)  # [z, x]: columns patient right -> left
    sagittal_lab = _label_projection(labels, values, axis=2)
    coronal_lab = _label_projection(labels, values, axis=1)
    ribs_ct = rib_view(ct, y_centre, spacing)

    rows_of, sag_places, cor_places = {}, {}, {}
    margin = max(1, int(round(4.0 / spacing)))
    for v in vertebrae:
        z, y, x = np.nonzero(labels == v.label)
        rows_of[v.label] = float(z.mean())
        # Preferred: anterior of the vertebra in the sagittal view (the abdomen/chest has room), patient's left of
        # it in the coronal view; then the other side; then centred on the vertebra.
        sag_places[v.label] = [(y.min() - margin, "right"), (y.max() + 1 + margin, "left"), (y.mean() + 0.5, "center")]
        cor_places[v.label] = [(x.max() + 1 + margin, "left"), (x.min() - margin, "right"), (x.mean() + 0.5, "center")]

    n_rows, n_y, n_x = ct.shape
    width_mm = (n_y + 2 * n_x) * spacing
    height_mm = n_rows * spacing * (1 + 2 * BAND_FRACTION)
    fig_h = 7.5
    fig_w = max(9.0, fig_h * width_mm / height_mm * 0.95 + 0.6)
    if fig_w > MAX_WIDTH_IN:  # a wide field of view: lower, not only narrower, so the views fill the picture
        fig_h = max(4.5, fig_h * (MAX_WIDTH_IN - 0.6) / (fig_w - 0.6))
        fig_w = MAX_WIDTH_IN
    fig = Figure(figsize=(fig_w, fig_h), facecolor="black")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [n_y, n_x, n_x], "wspace": 0.03})
    title = _wrapped_title(result, fig_w)
    title_in = _TITLE_LINE_IN * title.count("\n") + _TITLE_MARGIN_IN  # the title's height above the views
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1.0 - title_in / fig_h)
    for ax in axes:
        ax.set_facecolor("black")
    _draw_view(axes[0], sagittal_ct, sagittal_lab, spacing, vertebrae, ("A", "P", "S", "I"), rows_of, sag_places)
    _draw_view(axes[1], coronal_ct, coronal_lab, spacing, vertebrae, ("R", "L", "S", "I"), rows_of, cor_places)
    _draw_view(axes[2], ribs_ct, coronal_lab, spacing, vertebrae, ("R", "L", "S", "I"), rows_of, cor_places,
               fill=False)
    axes[0].set_title("sagittal (curved slab)", color="white", fontsize=9)
    axes[1].set_title("coronal (curved slab)", color="white", fontsize=9)
    axes[2].set_title("ribs (coronal, maximum behind the bodies)", color="white", fontsize=9)
    if not vertebrae:
        for ax in axes:
            ax.text(0.5, 0.5, "no spine found", transform=ax.transAxes, color="yellow", fontsize=18,
                    fontweight="bold", ha="center", va="center", path_effects=_OUTLINE)
    fig.suptitle(title, color="white", fontsize=_TITLE_POINTS)
    fig.savefig(str(path), dpi=DPI, facecolor="black", format="png")
