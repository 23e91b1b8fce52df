"""The files a run writes: label map, Slicer segmentation, vertebra report, VerSe centroids, QC picture.

Usage::

    from SpineSegmentationLib.outputs import write_outputs
    paths = write_outputs(result, ct_image, "ct_spineseg")
    print(paths["segmentation"])   # ct_spineseg/segmentation.seg.nrrd

Files (fixed names, see :data:`OUTPUT_FILES`), one module each:

- ``labels.nii.gz``: int16 label map, VerSe numbers, input grid (:mod:`.label_map`);
- ``segmentation.seg.nrrd``: one segment per vertebra, SNOMED CT terminology, completeness tags
  (:mod:`.segmentation_nrrd`);
- ``vertebrae.json``: per-vertebra table, run info, label alternatives, input geometry (:mod:`.vertebrae_json`);
- ``centroids_ctd.json``: VerSe centroid file (vertebral-body centres) in voxel units of labels.nii.gz (:mod:`.centroids`);
- ``qc.png``: sagittal + coronal check picture (:mod:`.qc_picture`).

Nothing the user made is overwritten: before anything is written, every target is checked and
:class:`~SpineSegmentationLib.errors.OutputExistsError` names the first existing one (unless
``overwrite=True``). The input image can never be overwritten, by construction: the outputs have the five
fixed names above inside ``output_dir``, and when the caller passes ``input_path`` any output that would
resolve to the input file is refused even with ``overwrite=True``.

The five files appear together or not at all, and two runs never write into one folder at the same time
(:mod:`.staging`): they are written into a staging folder that is also an exclusive claim on ``output_dir``,
then renamed into place; on any error or interrupt the staging folder is removed.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Optional

import SimpleITK as sitk

from ..errors import OutputExistsError, SpineSegmentationError
from ..geometry import image_grid_mismatch, same_grid
from ..io import SERIES_UID_KEY
from ..result import SpineSegmentationResult
from .centroids import write_ctd
from .dicom_seg import DICOM_SEG_FILE, write_dicom_seg_output
from .label_map import write_label_map
from .qc_picture import write_qc_png
from .segmentation_nrrd import write_segmentation_nrrd
from .staging import OutputStaging, describe_write_error
from .vertebrae_json import write_vertebrae_json

#: Key -> file name of every output.
OUTPUT_FILES: dict[str, str] = {
    "labels": "labels.nii.gz",
    "segmentation": "segmentation.seg.nrrd",
    "vertebrae": "vertebrae.json",
    "centroids": "centroids_ctd.json",
    "qc": "qc.png",
}

__all__ = ["OUTPUT_FILES", "DicomSegNotWrittenError", "OutputStaging", "check_outputs_free", "output_paths",
           "write_outputs"]


class DicomSegNotWrittenError(SpineSegmentationError):
    """The DICOM SEG could not be made; the five other outputs were written and are in place.

    Attributes:
        paths: ``{key: path}`` of the outputs written (as :func:`write_outputs` returns them, without
            ``"dicom_seg"``).
        reason: why the DICOM SEG could not be made (the message without where the outputs are).
    """

    def __init__(self, message: str, paths: dict[str, Path], reason: str) -> None:
        super().__init__(message)
        self.paths = paths
        self.reason = reason


def output_paths(output_dir: str | os.PathLike) -> dict[str, Path]:
    """Paths of the five outputs in ``output_dir`` (keys as in :data:`OUTPUT_FILES`)."""
    return {key: Path(output_dir) / name for key, name in OUTPUT_FILES.items()}


def _check_same_grid(labels: sitk.Image, image: sitk.Image) -> None:
    if not same_grid(labels, image):
        raise ValueError(
            "result.labels is not on the input image's grid ("
            + image_grid_mismatch(labels, image, "the input image's")
            + "); resample it with geometry.label_to_input_grid before writing"
        )


def _on_input_geometry(labels: sitk.Image, image: sitk.Image) -> sitk.Image:
    """``labels`` (on ``image``'s grid, :func:`_check_same_grid`) with exactly ``image``'s origin, spacing and
    direction, as they are read with it index for index (labels.nii.gz, the .seg.nrrd, the DICOM SEG): ``labels``
    itself where they are the same already (the usual case: no copy, which would be 200 MB for 512 x 512 x 400 voxels
    of int16), else a copy with ``image``'s geometry (``same_grid`` takes voxel centres within a quarter voxel of the
    input's); ``labels`` is never changed."""
    if (labels.GetOrigin(), labels.GetSpacing(), labels.GetDirection()) == (
            image.GetOrigin(), image.GetSpacing(), image.GetDirection()):
        return labels
    copy = sitk.Image(labels)  # shares the buffer until CopyInformation makes it its own
    copy.CopyInformation(image)
    return copy


def _targets(output_dir: Path) -> dict[str, Path]:
    """Every file a run may write into ``output_dir``: the five outputs and the optional DICOM SEG."""
    return {**output_paths(output_dir), "dicom_seg": output_dir / DICOM_SEG_FILE}


def _check_targets(paths: dict[str, Path], overwrite: bool, input_path: Path | None) -> None:
    if input_path is not None:
        source = Path(input_path).resolve()
        folder = paths["labels"].parent
        if source.is_dir() and folder.resolve() == source:
            raise OutputExistsError(f"the output folder {folder} is the DICOM input folder {input_path}; the input is "
                                    "never written to: choose another output folder (-o)")
        for path in paths.values():
            if path.resolve() == source:
                raise OutputExistsError(
                    f"output {path} would replace the input image {input_path}; choose another output "
                    "folder (-o)"
                )
    if overwrite:
        return
    for path in paths.values():
        if path.exists():
            raise OutputExistsError(
                f"{path} already exists and would be overwritten; pass --overwrite (overwrite=True) to replace "
                "it or choose another output folder with -o"
            )


def check_outputs_free(
    output_dir: str | os.PathLike, overwrite: bool = False, input_path: str | os.PathLike | None = None
) -> None:
    """Fail early, before a long run, when :func:`write_outputs` would refuse to write into ``output_dir``.

    Raises:
        OutputExistsError: as :func:`write_outputs` would.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(f"output folder {output_dir} is a file; choose another output folder with -o")
    _check_targets(_targets(output_dir), overwrite, Path(input_path) if input_path is not None else None)


def write_outputs(
    result: SpineSegmentationResult,
    image: sitk.Image,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    *,
    input_path: str | os.PathLike | None = None,
    staging: Optional[OutputStaging] = None,
    dicom_seg: bool = False,
) -> dict[str, Path]:
    """Write the five output files of a run into ``output_dir`` (created if needed), all together or none.

    Args:
        result: the segmentation result; ``result.labels`` is the int16 VerSe label map on ``image``'s grid.
        image: the input CT in HU (its grid defines the geometry of every output; LPS physical space).
        output_dir: output folder.
        overwrite: replace existing output files (a ``segmentation.dcm`` this run does not write is removed: it
            belongs to an earlier result); without it an existing output file is an error.
        input_path: path of the input image file, if any; recorded in ``vertebrae.json`` and never written to.
        staging: a claim on ``output_dir`` already held by the caller (the command line claims the folder before
            the work, so that a second run is refused at once); default: claimed here.
        dicom_seg: also write ``segmentation.dcm`` for a non-DICOM input (it then references no series); for a
            DICOM series folder as ``input_path`` it is always written (:mod:`.dicom_seg`; not for an empty
            result, which a DICOM Segmentation cannot hold: a warning says so). It is committed with the others.

    Returns:
        ``{"labels", "segmentation", "vertebrae", "centroids", "qc"}`` (and ``"dicom_seg"`` when written) ->
        path of the written file.

    Raises:
        OutputExistsError: an output file exists and ``overwrite`` is False, ``output_dir`` is a file, or an
            output would replace the input image. Raised before anything is written.
        OutputWriteError: another run is writing into ``output_dir``, the folder is not writable, or the disk
            is full; nothing was written then.
        DicomSegNotWrittenError: the DICOM SEG could not be made (highdicom missing, a source series it cannot
            reference, a source DICOM folder that changed during the run: a slice file gone or unreadable, named in
            the message, ...): the five other outputs were written and are in place (its ``paths``), no
            ``segmentation.dcm`` is (an earlier one is removed with ``overwrite``); the message says why and what
            the folder holds.
        ValueError: ``result.labels`` is not on ``image``'s grid (``geometry.same_grid``: voxel centres within a
            quarter voxel of the input's; labels within it are written with ``image``'s geometry), or it holds
            labels without a Vertebra entry.
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputExistsError(f"output folder {output_dir} is a file; choose another output folder with -o")
    if image.GetDimension() != 3:
        raise ValueError(f"the input image must be 3D, got {image.GetDimension()}D")
    _check_same_grid(result.labels, image)
    result = replace(result, labels=_on_input_geometry(result.labels, image))
    paths = output_paths(output_dir)
    _check_targets(_targets(output_dir), overwrite, Path(input_path) if input_path is not None else None)
    if staging is None:
        with OutputStaging(output_dir) as own:
            extra, seg_failure = _write_staged(result, image, own, overwrite, input_path, dicom_seg)
    else:
        extra, seg_failure = _write_staged(result, image, staging, overwrite, input_path, dicom_seg)
    paths.update({key: output_dir / name for key, name in extra.items()})
    if seg_failure is not None:
        reason = str(seg_failure) if isinstance(seg_failure, SpineSegmentationError) else \
            f"internal error ({type(seg_failure).__name__}: {seg_failure}); this is a bug, please report it"
        raise DicomSegNotWrittenError(
            f"{DICOM_SEG_FILE} was not written: {reason}. The other outputs are complete in {output_dir} "
            f"({', '.join(OUTPUT_FILES.values())})", paths, reason) from seg_failure
    return paths


def _write_staged(result, image, staging: OutputStaging, overwrite: bool, input_path, dicom_seg: bool) -> tuple:
    """Write every output into the staging folder and commit them together; returns (``{key: file name}`` of the
    optional outputs that were written (the DICOM SEG), the exception that stopped the DICOM SEG or None).

    The DICOM SEG is made first, so that vertebrae.json lists it among the run's files. When it fails (other than
    by the disk, which would fail the others too), the five outputs are still written and committed without it:
    the caller raises its failure then, after the labels of a run of minutes are safe."""
    staging.check_free([*OUTPUT_FILES.values(), DICOM_SEG_FILE], overwrite)  # again, now no other writer can come
    seg_failure = None
    series_uid = image.GetMetaData(SERIES_UID_KEY) if image.HasMetaDataKey(SERIES_UID_KEY) else None
    try:
        extra = {key: path.name for key, path in write_dicom_seg_output(
            result, staging.path, input_path, requested=dicom_seg, overwrite=True, series_uid=series_uid).items()}
    except OSError as exc:  # writing it (reading the source series raises SourceSeriesError, kept below)
        raise describe_write_error(exc, staging.path / DICOM_SEG_FILE) from exc
    except Exception as exc:  # noqa: BLE001 - raised by write_outputs once the other outputs are in place
        seg_failure, extra = exc, {}
    writers = {
        "labels": lambda p: write_label_map(result.labels, p),
        "segmentation": lambda p: write_segmentation_nrrd(result, p),
        "vertebrae": lambda p: write_vertebrae_json(result, image, p, input_path, {**OUTPUT_FILES, **extra}),
        "centroids": lambda p: write_ctd(result.labels, p),
        "qc": lambda p: write_qc_png(result, image, p),
    }
    for key, write in writers.items():
        target = staging.path / OUTPUT_FILES[key]
        try:
            write(target)
        except OSError as exc:
            raise describe_write_error(exc, target) from exc
    stale = [] if DICOM_SEG_FILE in extra.values() else [DICOM_SEG_FILE]  # an earlier run's, of another result
    staging.commit(list(OUTPUT_FILES.values()) + list(extra.values()), overwrite, remove=stale)
    return extra, seg_failure
