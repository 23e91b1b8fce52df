"""What a model saw in training, across warm starts, and the check that a held-out scan is not among it.

A model that is measured on a scan "it never saw" must not have trained on that scan's image or label map, not as
synthesis context, not through the checkpoint it was started from (``fcn_training.init_from``), and not through
pseudo-labels written by a model that saw it (a manifest case's ``teacher``: the labels carry what the teacher
learned). The training configuration names such scans in ``data.held_out``; :func:`check_held_out` refuses to train
when one of them is among the run's training files or in the recorded lineage of the starting model or of a
teacher. A held-out scan that is a validation CT is left out of the validation loss (:func:`held_out_validation`).
A validation CT must be a scan the model never saw: :func:`check_validation_apart` refuses one that the run trains on,
that the model it starts from or a pseudo-label teacher saw, or (:func:`resumed_lineage`) that the sessions of a
resumed run before its checkpoint trained on, so that the model card's "never trained on" holds.

Scans are compared by :func:`scan_digest`, a digest of their voxel values, so the same scan under another name or
in another container (.nii, .nii.gz, .nrrd, a DICOM series) is recognized. A different scan of the same patient is
not: name it in ``data.held_out`` too when it must stay out.

Every model folder written by :mod:`.trainer` records ``training.seen_in_training``: one entry
``{"file": path, "sha256": digest}`` per scan or label map it trained on, its warm-start ancestors' and its
pseudo-label teachers' included (a resumed run's also what its checkpoint recorded: :func:`resumed_lineage`), and
``training.seen_in_training_complete`` (False when an ancestor did not record its own).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import ModelFileError, SpineSegmentationError
from ..models import read_model_json
from .readers import Case, read_image


class HeldOutLeakError(SpineSegmentationError):
    """A scan named in ``data.held_out`` is among the training data or in the starting model's lineage."""


def scan_digest(path: str | Path) -> str:
    """SHA-256 of a scan's voxel values (as float64, reoriented to LPS, with the grid size), so that the same scan
    written in another container or format gets the same digest.

    Args:
        path: a NIfTI/NRRD file or a DICOM series folder.

    Raises:
        FileNotFoundError: no image at ``path``.
    """
    image = sitk.DICOMOrient(read_image(path), "LPS")
    values = sitk.GetArrayViewFromImage(image)
    digest = hashlib.sha256(np.asarray(values.shape, dtype=np.int64).tobytes())
    for axial_slice in values:  # one slice at a time: a 512x512x600 CT would take 1.3 GB as float64
        digest.update(np.ascontiguousarray(axial_slice, dtype=np.float64).tobytes())
    return digest.hexdigest()


def run_digest() -> Callable[[str | Path], str]:
    """:func:`scan_digest` for one training run: each file (by its resolved path) is read and digested once, however
    many checks ask for it (a validation CT is checked against the training data and against ``data.held_out``).
    Make one per run: a file may change between runs."""
    known: dict[Path, str] = {}

    def digest(path: str | Path) -> str:
        key = Path(path).resolve()
        if key not in known:
            known[key] = scan_digest(path)
        return known[key]

    return digest


def training_files(cases: list[Case], anatomy_maps: list[str]) -> list[Path]:
    """The files a run trains on, as :class:`~.data.TrainingData` uses them: train-split images and their label
    maps, train-split mask-only label maps (synthesis sources) and whole-anatomy maps. Validation cases are left
    out: the loss on their CTs is only logged, and their masks without a CT are not used."""
    files: list[Path] = []
    for case in cases:
        if case.split != "train":
            continue
        files += [Path(p) for p in (case.image, case.labels) if p is not None]
    return files + [Path(p) for p in anatomy_maps]


def seen_entries(files: list[Path], digest: Callable[[str | Path], str] = scan_digest) -> list[dict]:
    """``{"file": str, "sha256": scan_digest}`` per distinct scan among ``files`` (the lineage record of
    :mod:`.trainer`; a label map used both as a case's labels and as synthesis context is listed once).
    ``digest``: :func:`scan_digest` or a run's :func:`run_digest`."""
    return merge([], [{"file": str(path), "sha256": digest(path)} for path in files])


def validation_entries(cases: list[Case], digest: Callable[[str | Path], str] = scan_digest) -> list[dict]:
    """:func:`seen_entries` of the validation cases' CTs (the scans whose loss is logged as a held-out measure)."""
    return seen_entries([Path(case.image) for case in cases if case.split == "validation" and case.image is not None],
                        digest)


def inherited_lineage(init_from: str | Path | None) -> tuple[list[dict], bool]:
    """The lineage recorded by the model or checkpoint a run starts from.

    Args:
        init_from: a model folder (``model.json``), an earlier run's ``checkpoint.pt``, or None (from scratch).

    Returns:
        (entries, complete): ``complete`` is False when ``init_from`` does not record what it saw (a model
        written before lineages were recorded).

    Raises:
        FileNotFoundError: ``init_from`` is neither a model folder nor a file.
        SpineSegmentationError: ``init_from`` is a file but no ``checkpoint.pt`` of :mod:`.trainer` (e.g. the
            ``model.json`` of a model folder instead of the folder).
        ModelFileError: the folder's ``model.json`` is not UTF-8 text, not valid JSON or not a JSON object, or its
            ``training`` is not a JSON object or its ``training.seen_in_training`` not a list; the message names the
            file and says to restore or retrain the model.
    """
    if init_from is None:
        return [], True
    path = Path(init_from)
    meta_path = path / "model.json"
    if meta_path.is_file():
        meta = read_model_json(meta_path)
        training = meta.get("training") or {}
        if not isinstance(training, dict):
            raise ModelFileError(f"{meta_path}: 'training' is {training!r:.60}, not a JSON object of training "
                                 "provenance; the model file is corrupt: restore or retrain it")
        source = meta_path
    elif path.is_file():
        training = _checkpoint_state(path)
        source = path
    elif path.is_dir():
        raise FileNotFoundError(f"fcn_training.init_from: {path} is a folder without model.json, not a model folder; "
                                "give an earlier run's checkpoint.pt or a model folder (model.json + safetensors), "
                                "e.g. <run folder>/<name>")
    else:
        raise FileNotFoundError(f"fcn_training.init_from: {path} does not exist; give an earlier run's "
                                "checkpoint.pt or a model folder (model.json + safetensors)")
    if "seen_in_training" not in training:
        return [], False
    if not isinstance(training["seen_in_training"], (list, tuple)):
        raise ModelFileError(f"{source}: seen_in_training is {training['seen_in_training']!r:.60}, not a list of "
                             "the scans the model saw; the file is corrupt: restore or retrain it")
    return list(training["seen_in_training"]), bool(training.get("seen_in_training_complete", True))


def _checkpoint_state(path: Path) -> dict:
    """The ``state`` of a ``checkpoint.pt`` written by :mod:`.trainer`.

    Raises:
        SpineSegmentationError: the file is no such checkpoint (not a torch file, e.g. a model folder's model.json or
            safetensors, or a torch file without the checkpoint's networks and state), named with the fix.
    """
    fix = ("give an earlier run's checkpoint.pt or a model folder (the folder holding model.json, not a file in it)"
           if path.name == "model.json" or path.suffix == ".safetensors" else
           "give an earlier run's checkpoint.pt or a model folder (model.json + safetensors)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds (UnpicklingError, RuntimeError, EOFError, ...)
        raise SpineSegmentationError(f"fcn_training.init_from: {path} is not a checkpoint written by spineseg train "
                                     f"(torch cannot read it: {type(error).__name__}); {fix}") from error
    if not (isinstance(checkpoint, dict) and isinstance(checkpoint.get("state"), dict) and "fcn" in checkpoint):
        raise SpineSegmentationError(f"fcn_training.init_from: {path} is a torch file but not a checkpoint written by "
                                     f"spineseg train (no networks and training state in it); {fix}")
    return checkpoint["state"]


def teacher_lineage(cases: list[Case], resumed: dict | None = None,
                    digest: Callable[[str | Path], str] = scan_digest) -> tuple[list[dict], list[str]]:
    """What the teachers of the train-split pseudo-labelled cases saw in training (a case's ``teacher``: the model
    folder named in the manifest's ``teacher`` column), after checking that each teacher is a model folder.

    Args:
        cases: the run's cases.
        resumed: the ``state`` of the checkpoint a resumed run continues from; None for a new run. Where it records a
            lineage (``seen_in_training``), a teacher folder that is gone (or holds no ``model.json``) is not needed
            for a case whose label map the record lists: that teacher's lineage was merged into the record when the
            run first trained on the case, and :func:`resumed_lineage` checks the held-out and validation scans
            against it. A teacher that is still there is read, as in a new run.
        digest: :func:`scan_digest` or the run's :func:`run_digest` (for the label maps looked up in the record).

    Returns:
        (entries, unrecorded): the teachers' recorded lineage entries (each digest once), and the teacher folders
        that do not record a complete lineage.

    Raises:
        FileNotFoundError: a teacher is not a model folder (it does not exist, or holds no ``model.json``): in a new
            run; in a resumed one unless its checkpoint records a lineage and the case is a validation case or one
            that lineage lists (not one added since); names the teacher, its label map and the fix.
        ModelFileError: a teacher's ``model.json`` is corrupt (:func:`inherited_lineage`).
    """
    record = resumed.get("seen_in_training") if resumed is not None else None
    trained = {entry["sha256"] for entry in record or []}
    absent = set()
    for case in cases:
        if case.teacher is None or (Path(case.teacher) / "model.json").is_file():
            continue
        if record is not None and (case.split != "train" or digest(case.labels) in trained):
            absent.add(case.teacher)  # in the checkpoint's record (a validation case's teacher is never read)
            continue
        what = "is not a model folder (no model.json)" if Path(case.teacher).exists() else "does not exist"
        since = ("; the checkpoint resumed from has not trained on this label map (a case added since, or a "
                 "checkpoint that records no lineage), so what the teacher saw must be read from its folder"
                 if resumed is not None else "")
        raise FileNotFoundError(f"the teacher {case.teacher} of the pseudo-label map {case.labels} (the manifest's "
                                f"teacher column) {what}{since}: name the model folder whose output the label map "
                                "is (a relative path is relative to the manifest file)")
    entries: list[dict] = []
    unrecorded: list[str] = []
    for teacher in sorted({case.teacher for case in cases if case.teacher is not None and case.split == "train"}
                          - absent):
        seen, complete = inherited_lineage(teacher)
        entries = merge(entries, seen)
        if not complete:
            unrecorded.append(str(teacher))
    return entries, unrecorded


def check_validation_apart(validation: list[dict], trained: list[dict],
                           source: str = "the run trains on",
                           fix: str = "keep each scan in one split (the manifest's split column)") -> None:
    """Refuse a validation case whose scan was or is trained on (the same file, or a copy of it under another name):
    its validation loss would be a training loss, and the model card would list it as never trained on.

    Args:
        validation: :func:`validation_entries` of the run's cases.
        trained: lineage entries of what ``source`` trained on, e.g. :func:`seen_entries` of the run's
            :func:`training_files`, or the lineage of the model the run starts from.
        source, fix: for the message ("..., which {source}: {fix}").

    Raises:
        SpineSegmentationError: names both files, ``source`` and ``fix``.
    """
    known = {entry["sha256"]: entry["file"] for entry in trained}
    for entry in validation:
        if entry["sha256"] in known:
            raise SpineSegmentationError(
                f"the validation case {entry['file']} is the same scan as {known[entry['sha256']]}, which {source}: "
                f"{fix}")


def held_out_validation(cases: list[Case], held_out: list[dict],
                        digest: Callable[[str | Path], str] = scan_digest) -> list[Case]:
    """The validation cases with a CT whose CT or label map is a held-out scan (by :func:`scan_digest`).

    The trainer leaves them out of the validation loss. That loss selects nothing (the model folder gets the last
    iterate or the weights' moving average, there is no best-checkpoint choice and no early stopping), so a
    held-out validation CT would not change the weights; but its loss would be in the run's log and loss curve, a
    measurement on the held-out scan taken while the run is made, which invites choosing the run by it.

    Args:
        cases: the run's cases.
        held_out: :func:`seen_entries` of the paths in ``data.held_out``.
        digest: :func:`scan_digest` or the run's :func:`run_digest` (which has the validation CTs already).
    """
    digests = {entry["sha256"] for entry in held_out}
    if not digests:
        return []
    return [case for case in cases if case.split == "validation" and case.image is not None
            and any(digest(path) in digests for path in (case.image, case.labels))]


def merge(own: list[dict], inherited: list[dict]) -> list[dict]:
    """``own`` then the ``inherited`` entries whose digest is not already listed (each digest once)."""
    out, known = list(own), {entry["sha256"] for entry in own}
    for entry in inherited:
        if entry["sha256"] not in known:
            out.append(entry)
            known.add(entry["sha256"])
    return out


def resumed_lineage(now: dict, checkpoint_state: dict, validation: list[dict] | None = None) -> dict:
    """The lineage of a resumed run: what its checkpoint records it trained on before, and what it trains on now,
    each digest once, so that a case removed from the data before resuming stays recorded.

    Args:
        now: the lineage of the data as it is now (``seen_in_training``, ``seen_in_training_complete``,
            ``held_out``).
        checkpoint_state: the ``state`` of the checkpoint resumed from.
        validation: :func:`validation_entries` of the run's cases now.

    Returns:
        ``now`` with the union of both records; ``seen_in_training_complete`` is False when the checkpoint records
        no lineage (written before lineages were recorded).

    Raises:
        HeldOutLeakError: a scan of ``now["held_out"]`` is among what the checkpoint trained on.
        SpineSegmentationError: a scan of ``validation`` is among what the checkpoint trained on (a case trained on
            before the resume and moved to the validation split since: the resumed model has seen it).
    """
    before = checkpoint_state.get("seen_in_training")
    trained = {entry["sha256"] for entry in before or []}
    leaked = [entry["file"] for entry in now.get("held_out", []) if entry["sha256"] in trained]
    if leaked:
        raise HeldOutLeakError(f"the held-out scan(s) {leaked} are among what the checkpoint resumed from trained on; "
                               "a model resumed from it has seen them: train a new run without them")
    check_validation_apart(validation or [], before or [], "the checkpoint resumed from records as trained on (the "
                           "sessions of this run before it)",
                           "a model resumed from the checkpoint has seen it, so its loss is no held-out measure. Put "
                           "it back in the train split or leave it out of the data, or start a new run folder (-o) "
                           "that validates on it")
    return dict(now, seen_in_training=merge(now["seen_in_training"], before or []),
                seen_in_training_complete=bool(now["seen_in_training_complete"] and before is not None
                                               and checkpoint_state.get("seen_in_training_complete", True)))


def check_held_out(held_out: list[dict], own: list[dict], inherited: list[dict], inherited_complete: bool,
                   init_from: str | None, taught: list[dict] | None = None,
                   unrecorded_teachers: list[str] | None = None) -> None:
    """Refuse a run that would see a held-out scan.

    Args:
        held_out: :func:`seen_entries` of the paths in ``data.held_out``.
        own: :func:`seen_entries` of this run's :func:`training_files`.
        inherited, inherited_complete: from :func:`inherited_lineage` of ``init_from``.
        init_from: the starting model or checkpoint (for the message).
        taught, unrecorded_teachers: from :func:`teacher_lineage` of the run's cases (None: no pseudo-labels).

    Raises:
        HeldOutLeakError: a held-out scan is among ``own``, ``inherited`` or ``taught``, or ``init_from`` or a
            teacher records no lineage, so that it cannot be shown not to have seen the held-out scans.
    """
    if not held_out:
        return
    names = [entry["file"] for entry in held_out]
    if not inherited_complete:
        raise HeldOutLeakError(
            f"fcn_training.init_from {init_from} does not record what it was trained on (model.json "
            f"training.seen_in_training), so it cannot be shown never to have seen the held-out scans {names}: "
            "start from scratch or from a model trained by this version")
    if unrecorded_teachers:
        raise HeldOutLeakError(
            f"the pseudo-label teacher(s) {unrecorded_teachers} do not record what they were trained on, so their "
            f"labels cannot be shown free of the held-out scans {names}: label the cases with a model trained by "
            "this version, or leave them out")
    for path, digest in ((entry["file"], entry["sha256"]) for entry in held_out):
        for source, entries, fix in (
                ("this run's training data", own,
                 "remove it from the manifest's train split, data.verse_root's train split, data.anatomy_maps and "
                 "data.synthetic_masks_root"),
                (f"the lineage of the model it starts from ({init_from})", inherited,
                 "start from scratch or from a model that never saw it"),
                ("the lineage of a pseudo-label teacher (the manifest's teacher column)", taught or [],
                 "label the cases with a model that never saw it")):
            hit = next((entry["file"] for entry in entries if entry["sha256"] == digest), None)
            if hit is not None:
                raise HeldOutLeakError(f"data.held_out names {path}, but the same scan ({hit}) is in {source}: {fix}")
