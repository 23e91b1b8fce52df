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
   (:data:`BONE_WINDOW`); the rib view, a maximum, has its own (:data:`RIB_WINDOW`).
3. The labels are shown as a **label projection** along the viewing direction (each pixel gets the label
   with the most voxels along its ray), so every vertebra appears even when the spine curves out of the slab.
   Each vertebra is outlined in its terminology colour and, except in the rib view, filled with it
   (semi-transparent); incompletely visible vertebrae (``complete`` false) are hatched (except in the rib view)
   and named "L5 (incomplete)".
4. Each vertebra's name sits beside it, level with its centroid, moved up or down (with a line back to its row)
   where it would cover a neighbour's name; orientation letters sit in the black bands above and below the
   views (the side letters in the top band's corners), never on the anatomy; the title gives the model, its
   version and the vertebra count.

The views reach :data:`VIEW_MARGIN_MM` beyond the labelled vertebrae (all of the scan's cranio-caudal extent),
and the picture is as high as its views: a wide, short scan gives a low picture, not views lost in black.

An empty result (no vertebra) shows flat slabs through the volume's centre (their captions say so) with
"no spine found".
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
from ..result import SpineSegmentationResult, column_and_beside, vertebra_count
from ..terminology import vertebra_terminology

#: Display window (level, width) in HU: a bone window, narrower than the cortical-bone (400, 1800) one
#: because the slab mean softens bone contrast.
BONE_WINDOW = (300.0, 1400.0)
#: Display window (level, width) in HU of the rib view, a maximum over bone and soft tissue: from 100 HU, above
#: soft tissue and unenhanced blood (fat -100, muscle and blood 40-60), which a maximum finds on every ray and which
#: shows black, to 1300 HU, the top of the standard bone window (level 400, width 1800), so that the column and the
#: rib heads at its sides (cancellous and cortical bone, 200-1300 HU after partial volume) are not one white band.
RIB_WINDOW = (700.0, 1200.0)
#: Black band above and below each view (fraction of its height) that holds the orientation letters and names;
#: at least ``_MIN_BAND_IN`` high (a short scan's views are low).
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
#: Height of the views (bands included), inches, where :data:`MAX_WIDTH_IN` allows; a wide, short field of view
#: gets lower views (the picture's height follows, with no empty band above or below).
VIEW_HEIGHT_IN = 6.9
#: How far the views reach beyond the labelled vertebrae, mm: anterior and posterior (sagittal view) and to each
#: side (coronal and rib views, wide enough for the posterior ribs). Beyond this the field of view of a chest or
#: abdomen CT (up to 500 mm) would only shrink the spine in the picture.
VIEW_MARGIN_MM = {"anterior": 80.0, "posterior": 40.0, "lateral": 120.0}
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


def _around_spine(ct: np.ndarray, labels: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """``ct`` and ``labels`` ([z, y, x] = [S, P, L] on the isotropic display grid of ``spacing`` mm) cut in y and x
    to the labelled voxels plus :data:`VIEW_MARGIN_MM` (all of z is kept: the scan's cranio-caudal coverage is
    what tells a cut vertebra). Unchanged when nothing is labelled."""
    fg = labels > 0
    if not fg.any():
        return ct, labels
    ys = np.nonzero(fg.any(axis=(0, 2)))[0]
    xs = np.nonzero(fg.any(axis=(0, 1)))[0]
    y0 = max(0, ys[0] - int(round(VIEW_MARGIN_MM["anterior"] / spacing)))
    y1 = min(fg.shape[1], ys[-1] + 1 + int(round(VIEW_MARGIN_MM["posterior"] / spacing)))
    lateral = int(round(VIEW_MARGIN_MM["lateral"] / spacing))
    x0, x1 = max(0, xs[0] - lateral), min(fg.shape[2], xs[-1] + 1 + lateral)
    return ct[:, y0:y1, x0:x1], labels[:, y0:y1, x0:x1]


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
#: Space below the views (inches), left and right of them (fraction of the width), between them (fraction of a
#: view's width).
_BOTTOM_MARGIN_IN = 0.08
_SIDE_MARGIN = 0.01
_WSPACE = 0.03
#: Lowest band above and below a view (inches): the height of an orientation letter.
_MIN_BAND_IN = 0.25


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
    head = f"{model} {version}".strip()
    if not result.vertebrae:
        return f"{head}: no spine found"
    column, beside = column_and_beside(result.vertebrae)  # counted as the run's message counts them
    n = len(column)
    incomplete = sum(1 for v in column if not v.complete)
    span = "" if n == 0 else f"{column[0].name}\u2013{column[-1].name}" if n > 1 else column[0].name
    details = ", ".join(part for part in (span, f"{incomplete} incomplete" if incomplete else "") if part)
    also = f"; also {', '.join(v.name for v in beside)}" if beside else ""
    return f"{head}: {vertebra_count(n)}" + (f" ({details})" if details else "") + also


#: Vertical gap between two names, display pixels.
_NAME_GAP_PX = 2.0


def _separate_names(ax, names, view_box, renderer) -> None:
    """Move the name boxes of one view apart vertically so that no two overlap (a short scan, or a vertebra cut
    by the field of view, puts the centroids of neighbours a few pixels apart), keeping their top-to-bottom order
    and keeping them inside the view (bands included) where there is room. A name moved off its vertebra's row
    gets a thin line in the vertebra's colour back to that row.

    ``names``: (matplotlib ``Text``, RGB colour) per vertebra, each already placed at its vertebra's row."""
    if len(names) < 2:
        return
    boxes = [text.get_window_extent(renderer) for text, _ in names]
    order = sorted(range(len(names)), key=lambda i: -(boxes[i].y0 + boxes[i].y1))  # top first
    shift = [0.0] * len(names)

    def beside(i, j):  # boxes i and j share columns
        return boxes[i].x0 < boxes[j].x1 and boxes[j].x0 < boxes[i].x1

    for n, i in enumerate(order):  # top down: each below the ones above it
        for j in order[:n]:
            if beside(i, j):
                limit = boxes[j].y0 + shift[j] - _NAME_GAP_PX - boxes[i].y1
                shift[i] = min(shift[i], limit)
    for n, i in reversed(list(enumerate(order))):  # bottom up: back inside the view, the ones above with them
        lift = view_box.y0 - (boxes[i].y0 + shift[i])
        for j in order[n + 1:]:
            if beside(i, j):
                lift = max(lift, boxes[j].y1 + shift[j] + _NAME_GAP_PX - (boxes[i].y0 + shift[i]))
        shift[i] += max(0.0, lift)
    to_data = ax.transData.inverted()
    for (text, colour), box, dy in zip(names, boxes, shift):
        if abs(dy) < 0.5:
            continue
        x, y = text.get_position()
        x_px, y_px = ax.transData.transform((x, y))
        new_y = to_data.transform((x_px, y_px + dy))[1]
        text.set_y(new_y)
        if abs(dy) > 0.5 * box.height:
            ax.plot([x, x], [y, new_y], color=colour, linewidth=0.8, solid_capstyle="butt")


def _draw_view(ax, ct2d, lab2d, spacing, vertebrae, letters, text_rows, text_places, fill=True,
               band_fraction=BAND_FRACTION, window=BONE_WINDOW):
    """One view: CT slab (shown in ``window``, (level, width) HU), label fill (unless ``fill`` is False)/outline/
    hatching, names, orientation letters. Rows = z (up = superior); a black band of ``band_fraction`` of the view's
    height above and below it.

    Each name is drawn at row ``text_rows[label]`` and the first of ``text_places[label]`` (a list of
    (column in voxels, horizontal alignment)) where it fits inside the view."""
    level, width = window
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
    band = band_fraction * extent[3]
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2] - band, extent[3] + band)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.apply_aspect()
    renderer = ax.figure.canvas.get_renderer()
    view_box = ax.get_window_extent(renderer)
    names = []
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
        names.append((text, colour))
    _separate_names(ax, names, view_box, renderer)
    bottom_y = 0.5 * band_fraction / (1 + 2 * band_fraction)
    top_y = 1 - bottom_y
    left, right, top, bottom = letters
    # all four in the black bands, the side letters in the top band's corners: none covers the anatomy
    for text, x, y, align in ((left, 0.01, top_y, "left"), (right, 0.99, top_y, "right"), (top, 0.5, top_y, "center"),
                              (bottom, 0.5, bottom_y, "center")):
        ax.text(x, y, text, transform=ax.transAxes, color="white", fontsize=13, fontweight="bold",
                ha=align, va="center", path_effects=_OUTLINE)


def write_qc_png(result: SpineSegmentationResult, image: sitk.Image, path: Path) -> None:
    """Draw the QC picture of ``result`` over ``image`` (CT in HU) and save it as PNG to ``path``.

    Args:
        result: segmentation result; ``result.labels`` must be on ``image``'s grid.
        image: the input CT (HU), any direction matrix.
        path: output ``.png`` file.
    """
    qc_figure(result, image).savefig(str(path), dpi=DPI, facecolor="black", format="png")


def qc_figure(result: SpineSegmentationResult, image: sitk.Image) -> Figure:
    """The QC picture of ``result`` over ``image`` (CT in HU) as a matplotlib ``Figure`` (Agg canvas, drawn at
    :data:`DPI`): three axes, sagittal, coronal and ribs (see the module docstring); each vertebra's name is a
    ``Text`` with a coloured box in each view. Arguments as :func:`write_qc_png`."""
    grid = display_grid(image)
    spacing = grid.GetSpacing()[0]
    ct = sitk.GetArrayFromImage(
        sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32)
    )  # [z, y, x] = [S, P, L]; interpolated from the stored voxels (no float copy of the whole CT first)
    labels = sitk.GetArrayFromImage(
        sitk.Resample(result.labels, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt16)
    )
    ct, labels = _around_spine(ct, labels, spacing)
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
    width_mm = (n_y + 2 * n_x) * spacing * (1 + _WSPACE)  # the three views and the gaps between them
    height_mm = n_rows * spacing
    # inches per mm: views VIEW_HEIGHT_IN high, lower where MAX_WIDTH_IN does not allow it (a wide, short field of
    # view: the picture as low as its views, no empty band above or below them)
    scale = min(VIEW_HEIGHT_IN / (height_mm * (1 + 2 * BAND_FRACTION)),
                MAX_WIDTH_IN * (1 - 2 * _SIDE_MARGIN) / width_mm)
    band_in = max(BAND_FRACTION * height_mm * scale, _MIN_BAND_IN)  # room for the S/I letters however low
    band_fraction = band_in / (height_mm * scale)
    views_h = height_mm * scale + 2 * band_in
    fig_w = max(9.0, scale * width_mm / (1 - 2 * _SIDE_MARGIN))
    title = _wrapped_title(result, fig_w)
    title_in = _TITLE_LINE_IN * title.count("\n") + _TITLE_MARGIN_IN  # the title's height above the views
    fig_h = views_h + title_in + _BOTTOM_MARGIN_IN
    fig = Figure(figsize=(fig_w, fig_h), facecolor="black", dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [n_y, n_x, n_x], "wspace": _WSPACE})
    fig.subplots_adjust(left=_SIDE_MARGIN, right=1.0 - _SIDE_MARGIN, bottom=_BOTTOM_MARGIN_IN / fig_h,
                        top=1.0 - title_in / fig_h)
    for ax in axes:
        ax.set_facecolor("black")
    _draw_view(axes[0], sagittal_ct, sagittal_lab, spacing, vertebrae, ("A", "P", "S", "I"), rows_of, sag_places,
               band_fraction=band_fraction)
    _draw_view(axes[1], coronal_ct, coronal_lab, spacing, vertebrae, ("R", "L", "S", "I"), rows_of, cor_places,
               band_fraction=band_fraction)
    _draw_view(axes[2], ribs_ct, coronal_lab, spacing, vertebrae, ("R", "L", "S", "I"), rows_of, cor_places,
               fill=False, band_fraction=band_fraction, window=RIB_WINDOW)
    if vertebrae:
        captions = ("sagittal (curved slab)", "coronal (curved slab)", "ribs (coronal, maximum behind the bodies)")
    else:  # no spine to follow: flat slabs through the volume's centre
        captions = ("sagittal (slab through the volume's centre)", "coronal (slab through the volume's centre)",
                    "coronal, maximum behind the volume's centre")
    for ax, caption in zip(axes, captions):
        ax.set_title(caption, color="white", fontsize=9)
    if not vertebrae:
        for ax in axes:
            ax.text(0.5, 0.5, "no spine found", transform=ax.transAxes, color="yellow", fontsize=18,
                    fontweight="bold", ha="center", va="center", path_effects=_OUTLINE)
    fig.suptitle(title, color="white", fontsize=_TITLE_POINTS)
    return fig
