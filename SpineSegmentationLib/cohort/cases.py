"""The cases of a cohort: image files in folders, a manifest CSV, or the CT series of a DICOM tree.

:func:`find_cases` turns the inputs of ``spineseg batch`` into a list of :class:`Case` (one CT each) and a list of
:class:`Skipped` (what was found but is not a case, with the reason):

- an image file (NIfTI, NRRD, MetaImage, see :data:`~SpineSegmentationLib.io.IMAGE_SUFFIXES`): one case, its id the
  file name without the suffix: the name as given, also for a symlink (the link's name, not its target's, whether
  the link is an input itself or found in a folder input, so that one file gives one case folder either way);
- a folder: searched recursively (hidden files and folders, names starting with ``.``, such as macOS's ``._*``
  resource forks, are not inputs; a subfolder that cannot be listed is skipped with the OS error); every image
  file is a case, and every DICOM series (grouped by
  SeriesInstanceUID, GDCM) in any subfolder is a case when it is a CT volume; non-CT series (Modality other than
  CT), localizers (ImageType LOCALIZER) and series with fewer than :data:`MIN_SERIES_SLICES` slices (the frames of
  one multi-frame file, e.g. an Enhanced CT, count as slices) are skipped
  with the reason. The id of a DICOM case is its folder relative to the input folder (``/`` -> ``_``; for a series
  in the input folder itself, that folder's name as given: a symlink's own name, as for a file), plus the series
  UID's last 8 characters (more where two series' last 8 are equal) when the folder holds several series;
- a manifest CSV (``--manifest``): header ``case_id,image[,reference][,series_uid]``; relative paths are taken
  from the CSV's folder; ``image`` is an image file or a DICOM series folder (``series_uid`` picks one series of a
  folder that holds several).

Case ids must be unique (they name the output folders), also when upper and lower case are not told apart
(``A`` and ``a`` are one folder on macOS and Windows); a duplicate is an error naming both inputs. The same
image (the same file after resolving symlinks, and the same series) found again, through a symlink or a repeated
manifest row, is not a second case: it is skipped with the reason ``same file as <case id>``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import SimpleITK as sitk

from ..errors import SpineSegmentationError
from ..io import IMAGE_SUFFIXES, dicom_series_in_folder, frame_count, image_suffix
from ..text_files import csv_rows, separator_hint

#: A DICOM series with fewer slices is not a CT volume to segment: localizers, dose reports, single reformats and
#: key images have 1-3; the shipped 40 mm test series has 20. (A cut-off, not a measurement: a volume that short
#: holds at most 2-3 vertebrae at 5 mm slices.)
MIN_SERIES_SLICES = 10

#: A folder holding this file is the output of a run, not input (never searched for cases).
OUTPUT_MARKER = "vertebrae.json"

_MODALITY_TAG = "0008|0060"
_IMAGE_TYPE_TAG = "0008|0008"
#: Files a file browser leaves in a folder it showed (and macOS's ``._*`` resource forks, see :func:`system_file`).
SYSTEM_FILES = (".DS_Store", "Thumbs.db", "desktop.ini")
_SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")

__all__ = ["Case", "MIN_SERIES_SLICES", "SKIPPED_KINDS", "SYSTEM_FILES", "Skipped", "find_cases", "read_manifest",
           "skipped_counts", "system_file"]


@dataclass(frozen=True)
class Case:
    """One CT of a cohort.

    Attributes:
        case_id: unique id, names the case's output folder (letters, digits, ``._-``).
        image: image file or DICOM series folder (absolute path).
        series_uid: Series Instance UID of a DICOM case (``""`` for an anonymised series without one), else None.
        reference: optional reference label map from the manifest (recorded in the summary, not used).
    """

    case_id: str
    image: Path
    series_uid: Optional[str] = None
    reference: Optional[Path] = None


#: What a :class:`Skipped` is (``Skipped.kind``), singular and plural, as :func:`skipped_counts` counts it.
SKIPPED_KINDS = {
    "DICOM series": "DICOM series",  # not a CT volume, an unreadable header, or split over folders
    "repeated file": "repeated files",  # an image file found again (symlink, repeated manifest row)
    "repeated DICOM series": "repeated DICOM series",
    "spineseg output folder": "spineseg output folders",
    "folder that cannot be listed": "folders that cannot be listed",
}


@dataclass(frozen=True)
class Skipped:
    """Something found in the inputs that is not a case, and why (e.g. ``"modality MR, not CT"``); ``kind`` says
    what it is, one of :data:`SKIPPED_KINDS`."""

    path: Path
    reason: str
    series_uid: Optional[str] = None
    kind: str = "DICOM series"


def skipped_counts(skipped: Iterable[Skipped]) -> str:
    """What was skipped, counted by kind: e.g. ``"2 DICOM series and 1 repeated file"``; ``""`` for nothing."""
    counts: dict[str, int] = {}
    for item in skipped:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    parts = [f"{n} {kind if n == 1 else SKIPPED_KINDS.get(kind, kind)}" for kind, n in counts.items()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def system_file(name: str) -> bool:
    """True for a file a file browser or macOS made (:data:`SYSTEM_FILES`, ``._*`` resource forks), not a person."""
    return name in SYSTEM_FILES or name.startswith("._")


def _hidden(name: str) -> bool:
    """Not an input when found in a folder: hidden names (``.``, macOS's ``._*`` too) and :func:`system_file`."""
    return name.startswith(".") or system_file(name)


def _safe_id(text: str) -> str:
    return _SAFE_ID.sub("_", text).strip("_") or "case"


def _dicom_tags(first_file: str) -> tuple[str, str, int]:
    """(Modality, ImageType, Number of Frames) of a DICOM file's header: the texts '' when absent, the frames as the
    reader counts them (:func:`~SpineSegmentationLib.io.frame_count`, 1 when absent). RuntimeError: unreadable."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    reader.ReadImageInformation()
    modality, image_type = (reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""
                            for tag in (_MODALITY_TAG, _IMAGE_TYPE_TAG))
    return modality, image_type, frame_count(reader)


def _skip_reason(files: list[str]) -> Optional[str]:
    try:
        modality, image_type, frames = _dicom_tags(files[0])
    except RuntimeError as exc:
        return f"unreadable DICOM header ({str(exc).strip().splitlines()[-1]})"
    if modality.upper() != "CT":
        return f"modality {modality or 'missing'}, not CT"
    if "LOCALIZER" in image_type.upper():
        return f"localizer (ImageType {image_type})"
    slices = frames * len(files)  # an Enhanced CT's frames are its slices
    if slices < MIN_SERIES_SLICES:
        return f"{slices} slices, fewer than {MIN_SERIES_SLICES}: not a CT volume"
    return None


def _series_suffixes(uids: list[str]) -> dict[str, str]:
    """The case id suffix of each series UID of one folder: its last 8 characters, more where two series' last 8
    are equal (e.g. ``...100.12345678`` and ``...200.12345678``), so that each series gets its own case id."""
    suffixes = {uid: _safe_id(uid[-8:]) for uid in uids}
    for length in range(9, max(map(len, uids), default=0) + 1):
        if len(set(suffixes.values())) == len(suffixes):
            break
        suffixes = {uid: _safe_id(uid[-length:]) for uid in uids}
    return suffixes


def _cases_in_folder(root: Path, exclude: Optional[Path]) -> tuple[list[Case], list[Skipped]]:
    cases, skipped = [], []
    visited = set()

    def unreadable(error: OSError) -> None:
        skipped.append(Skipped(Path(error.filename or root), f"folder cannot be listed ({error.strerror or error})",
                               kind="folder that cannot be listed"))

    # a cohort is often gathered by symlinks
    for folder, subfolders, files in os.walk(root, onerror=unreadable, followlinks=True):
        folder = Path(folder)
        subfolders[:] = [name for name in subfolders if not _hidden(name)]
        files = [name for name in files if not _hidden(name)]
        real = folder.resolve()
        if real in visited:  # a symlink back up the tree, or two links to one folder: searched once
            subfolders.clear()
            continue
        visited.add(real)
        subfolders.sort()
        if exclude is not None and any(exclude == path or exclude in path.parents for path in (folder, real)):
            subfolders.clear()
            continue
        if OUTPUT_MARKER in files:
            skipped.append(Skipped(folder, f"a spineseg output folder (holds {OUTPUT_MARKER})",
                                   kind="spineseg output folder"))
            subfolders.clear()
            continue
        for name in sorted(files):
            if image_suffix(name) is not None:
                path = folder / name
                cases.append(Case(_safe_id(str(path.relative_to(root))[: -len(image_suffix(name))]), path))
        series = dicom_series_in_folder(folder) if any(image_suffix(n) is None for n in files) else {}
        relative = _safe_id(str(folder.relative_to(root))) if folder != root else _safe_id(root.name)
        suffixes = _series_suffixes(list(series))
        for uid, series_files in series.items():
            reason = _skip_reason(series_files)
            if reason:
                skipped.append(Skipped(folder, reason, uid))
                continue
            case_id = relative if len(series) == 1 else f"{relative}_{suffixes[uid]}"
            cases.append(Case(case_id, folder, uid))
    return cases, skipped


def read_manifest(path: str | os.PathLike) -> list[Case]:
    """Cases of a manifest CSV (header ``case_id,image[,reference][,series_uid]``; paths relative to the CSV's
    folder).

    Raises:
        SpineSegmentationError: the file is missing, is not UTF-8 (names the line and says to save it as UTF-8
            CSV), lacks the columns (column names are read without surrounding spaces, in any case; says so when
            they are separated by semicolons or tabs), or a row has an empty case_id or image, or more fields than
            the header (an unquoted comma in a path).
    """
    path = Path(path)
    if not path.is_file():
        raise SpineSegmentationError(
            f"manifest {path} does not exist; give a CSV with columns case_id,image[,reference][,series_uid]"
        )
    reader = csv_rows(path, "manifest")  # "case_id, image" or "Image": the columns meant (values are stripped too)
    if not reader.fieldnames or not {"case_id", "image"} <= set(reader.fieldnames):
        raise SpineSegmentationError(
            f"manifest {path} has columns {reader.fieldnames}; it needs a header line with case_id,image "
            "(and optionally reference, series_uid)" + separator_hint(reader.fieldnames)
        )
    cases = []
    for row in reader:
        line = reader.line_num  # the file's line (blank lines are passed over)
        if any(field.strip() for field in row.get(None) or []):  # empty ones: a spreadsheet's trailing commas
            raise SpineSegmentationError(
                f"manifest {path}, line {line}: more fields than the header's {len(reader.fieldnames)} columns "
                f"(extra: {', '.join(map(repr, row[None]))}); put a name or path that holds a comma in double quotes "
                '("...") or name the extra column in the header'
            )
        case_id, image = (row.get("case_id") or "").strip(), (row.get("image") or "").strip()
        if not case_id or not image:
            raise SpineSegmentationError(f"manifest {path}, line {line}: case_id and image must not be empty")
        reference = (row.get("reference") or "").strip()
        series_uid = (row.get("series_uid") or "").strip() or None  # one series of a folder that holds several
        cases.append(Case(_safe_id(case_id), (path.parent / image).resolve(), series_uid=series_uid,
                          reference=(path.parent / reference).resolve() if reference else None))
    return cases


def _without_split_series(cases: list[Case], skipped: list[Skipped]) -> tuple[list[Case], list[Skipped]]:
    """Cases and skipped entries without the DICOM series found in several folders (a series split over folders, or
    copies of it): each part would be a case of part of the scan, or a few slices skipped as "not a CT volume".
    Every folder of such a series is skipped instead, with a reason that names them all; one folder reached twice
    (through a symlink) is one folder."""
    folders: dict[str, dict[Path, Path]] = {}  # series UID -> real folder -> the path it was found at
    for path, uid in [(c.image, c.series_uid) for c in cases] + [(s.path, s.series_uid) for s in skipped]:
        if uid and path.is_dir():  # "" is an anonymised series
            folders.setdefault(uid, {}).setdefault(path.resolve(), path)
    split = {uid: found for uid, found in folders.items() if len(found) > 1}
    if not split:
        return cases, skipped
    skipped = [s for s in skipped if s.series_uid not in split]
    for uid, found in split.items():
        reason = (f"the series is in {len(found)} folders ({', '.join(map(str, found.values()))}): split over them, or "
                  "copied; gather one whole series into one folder")
        skipped += [Skipped(path, reason, uid) for path in found.values()]
    return [c for c in cases if c.series_uid not in split], skipped


def _without_repeats(cases: list[Case], skipped: list[Skipped]) -> list[Case]:
    """``cases`` without those whose image (symlinks resolved) and series an earlier case has already (a manifest's
    DICOM folder without ``series_uid`` is the folder's one series); each one left out is added to ``skipped`` as
    ``same file as <case id>``."""
    first: dict[tuple[Path, Optional[str]], Case] = {}
    kept = []
    for case in cases:
        uid = case.series_uid
        if uid is None and case.image.is_dir():  # a manifest's DICOM folder without series_uid: its one series,
            ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(case.image))  # the same scan as the folder's case
            uid = ids[0] if len(ids) == 1 else None
        key = (case.image.resolve(), uid)
        if key in first:
            kind = "repeated DICOM series" if case.image.is_dir() else "repeated file"
            skipped.append(Skipped(case.image, f"same file as {first[key].case_id}", case.series_uid, kind))
            continue
        first[key] = case
        kept.append(case)
    return kept


def find_cases(inputs: Iterable[str | os.PathLike], manifest: Optional[str | os.PathLike] = None,
               exclude: Optional[str | os.PathLike] = None) -> tuple[list[Case], list[Skipped]]:
    """All cases of the inputs (files, folders) and the manifest, sorted by id; and what was skipped.

    ``exclude`` (the batch's output root) and spineseg output folders (holding ``vertebrae.json``) are not searched.

    A manifest's image that does not exist stays a case (it fails with its error when run), so that the summary
    lists it. An image (and series) found again, through a symlink or a repeated manifest row, is skipped as
    ``same file as <case id>`` of its first case (in the order: inputs as given, then the manifest's rows).

    Raises:
        SpineSegmentationError: an input does not exist or is a file of an unsupported type, a folder input is
            ``exclude`` or inside it, no case was found, or two inputs give the same case id.
    """
    cases: list[Case] = []
    skipped: list[Skipped] = []
    output = Path(exclude).resolve() if exclude is not None else None
    for item in inputs:
        path = Path(item).resolve()
        given = Path(item).parent.resolve() / Path(item).name  # a symlink keeps its name, as in a folder input
        if path.is_dir() and output is not None and (output == path or output in path.parents):
            where = "the output folder" if output == path else "inside the output folder"
            raise SpineSegmentationError(f"batch input {item} is {where} {exclude}, which is not searched; choose an "
                                         "output folder (-o) that is not an input and holds none, e.g. beside it")
        if path.is_dir():  # searched as given, so that a symlinked DICOM folder's case is named by the link
            found, passed_over = _cases_in_folder(given if given.name not in ("", "..") else path, output)
            cases += found
            skipped += passed_over
        elif path.is_file() and image_suffix(given) is not None:
            cases.append(Case(_safe_id(given.name[: -len(image_suffix(given))]), given))
        else:
            link = (f" (a link to {path}: name the link with its target's suffix, {image_suffix(path)})"
                    if path.is_file() and image_suffix(path) is not None else "")
            raise SpineSegmentationError(
                f"batch input {item} is {'not a supported image file' if path.exists() else 'missing'}{link}; give "
                f"image files ({', '.join(IMAGE_SUFFIXES)}), folders of them, DICOM trees, or --manifest CSV"
            )
    cases, skipped = _without_split_series(cases, skipped)
    if manifest is not None:
        cases += read_manifest(manifest)
    cases = _without_repeats(cases, skipped)
    seen: dict[str, Case] = {}  # by the id in lower case: "A" and "a" name one folder on macOS and Windows
    for case in cases:
        other = seen.get(case.case_id.casefold())
        if other is not None:
            ids = (f"the case id '{case.case_id}'" if other.case_id == case.case_id else
                   f"the case ids '{other.case_id}' and '{case.case_id}', one output folder where file names ignore "
                   "upper/lower case (macOS, Windows)")
            raise SpineSegmentationError(
                f"two inputs give {ids}: {other.image} and {case.image}; rename one, or list the cases in a "
                "--manifest with distinct case_id values"
            )
        seen[case.case_id.casefold()] = case
    if not cases:
        raise SpineSegmentationError(
            "no case found in the inputs" + (f" ({skipped_counts(skipped)} skipped: "
                                             f"{'; '.join(s.reason for s in skipped[:3])})" if skipped else "")
            + "; give image files, folders of them, a DICOM tree of CT series, or a --manifest CSV"
        )
    return sorted(cases, key=lambda c: c.case_id), skipped
