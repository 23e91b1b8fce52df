"""Self-describing model folders: round trip, checksum, version and configuration errors."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from SpineSegmentationLib.errors import ModelFileError
from SpineSegmentationLib.models import (DEFAULT_MODEL_DIR, LocalizationParameters, Postprocessing, Preprocessing,
                                         SpineModel, TraversalParameters, load_model, save_model)
from SpineSegmentationLib.networks import AttentionNet, AttentionNetConfig, IterativeFCN, IterativeFCNConfig


@pytest.fixture
def tiny_model_dir(tmp_path):
    torch.manual_seed(0)
    model = SpineModel("tiny", "1.2.3", "CT", Preprocessing(spacing_mm=3.0), TraversalParameters(max_iterations=7),
                       LocalizationParameters(), IterativeFCN(IterativeFCNConfig(16, 2, 2, 2, 1)),
                       AttentionNet(AttentionNetConfig(2, 4)), training={"iterations": 5},
                       postprocessing=Postprocessing(surface_refinement=False))
    return save_model(model, tmp_path / "tiny"), model


def test_round_trip_restores_configuration_parameters_and_weights(tiny_model_dir):
    path, original = tiny_model_dir
    loaded = load_model(path)
    assert (loaded.name, loaded.version, loaded.modality) == ("tiny", "1.2.3", "CT")
    assert loaded.preprocessing == original.preprocessing and loaded.traversal.max_iterations == 7
    assert loaded.training == {"iterations": 5}
    assert loaded.postprocessing == Postprocessing(surface_refinement=False)
    for a, b in zip(original.fcn.state_dict().values(), loaded.fcn.state_dict().values()):
        assert torch.equal(a, b)
    assert not loaded.fcn.training  # eval mode


def test_a_model_file_without_postprocessing_gets_the_papers_surface_refinement(tiny_model_dir):
    """Model folders written before the setting existed keep the behaviour they were made with."""
    path, _ = tiny_model_dir
    meta = json.loads((path / "model.json").read_text())
    del meta["postprocessing"]
    (path / "model.json").write_text(json.dumps(meta))
    assert load_model(path).postprocessing.surface_refinement is True


def test_existing_model_is_not_overwritten(tiny_model_dir):
    path, model = tiny_model_dir
    with pytest.raises(ModelFileError, match="already holds a model"):
        save_model(model, path)


def test_wrong_format_version_missing_weights_and_bad_config_are_explained(tiny_model_dir):
    path, _ = tiny_model_dir
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ModelFileError, match="format version 99"):
        load_model(path)
    (path / "model.json").write_text(json.dumps({**meta, "iterative_fcn": {**meta["iterative_fcn"], "filters": 3}}))
    with pytest.raises(ModelFileError, match="does not match the configuration") as info:
        load_model(path)
    assert len(str(info.value)) < 800 and "more lines" in str(info.value)  # not torch's list of every tensor
    for spacing in (0, "2.5"):
        (path / "model.json").write_text(json.dumps({**meta, "preprocessing": {**meta["preprocessing"],
                                                                                "spacing_mm": spacing}}))
        with pytest.raises(ModelFileError, match="invalid preprocessing: preprocessing.spacing_mm must be a number"):
            load_model(path)
    # a traversal or localization value the pipeline cannot use is refused on loading, not when a scan runs
    for section, key, value in (("traversal", "direction", "sideways"), ("traversal", "max_iterations", 0),
                                ("traversal", "step_fraction", 0), ("traversal", "test_time_mirror", "yes"),
                                ("localization", "slice_step", 1.5), ("localization", "threshold", 2)):
        (path / "model.json").write_text(json.dumps({**meta, section: {**meta[section], key: value}}))
        with pytest.raises(ModelFileError, match=f"invalid {section}: {section}.{key} must be"):
            load_model(path)
    (path / "model.json").write_text(json.dumps(meta))
    (path / "attention_net.safetensors").unlink()
    with pytest.raises(ModelFileError, match="missing"):
        load_model(path)
    (path / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_model(path)


def test_a_model_json_that_is_not_utf8_is_named_with_the_fix(tmp_path):
    """model.json is read as UTF-8 whatever the system's encoding; latin-1 bytes (here an "è" in the name) give a
    ModelFileError naming the file and what to do, not a bare UnicodeDecodeError."""
    path = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, path)
    meta = json.loads((path / "model.json").read_text(encoding="utf-8"))
    (path / "model.json").write_bytes(json.dumps({**meta, "name": "mod\u00e8le"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ModelFileError, match=r"model\.json is not UTF-8 text .*restore or retrain it"):
        load_model(path)


def test_the_shipped_model_loads_offline_and_describes_itself():
    model = load_model()
    assert model.path == DEFAULT_MODEL_DIR
    assert model.modality == "CT" and model.traversal.direction in ("up", "both")
    assert model.training, "the shipped model must carry its training provenance"
    assert (DEFAULT_MODEL_DIR / "MODEL_CARD.md").is_file()


def test_provenance_paths_are_stored_relative_to_the_repository(tmp_path):
    from SpineSegmentationLib.models import PROVENANCE_ROOT, relative_provenance, relativize_model_json

    data = PROVENANCE_ROOT.parent / "shared" / "data" / "ct" / "x.nii.gz"
    training = {"data": {"cases": [str(data), "sub-verse004"]}, "init_from": str(PROVENANCE_ROOT / "runs" / "c.pt"),
                "seed": 3, "notes": "FP/FN counts"}
    assert relative_provenance(training) == {"data": {"cases": ["../shared/data/ct/x.nii.gz", "sub-verse004"]},
                                             "init_from": "runs/c.pt", "seed": 3, "notes": "FP/FN counts"}
    model_dir = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model_dir)
    meta = json.loads((model_dir / "model.json").read_text())
    meta["training"] = training
    (model_dir / "model.json").write_text(json.dumps(meta))
    relativize_model_json(model_dir)
    rewritten = json.loads((model_dir / "model.json").read_text())
    assert rewritten["training"]["data"]["cases"][0] == "../shared/data/ct/x.nii.gz"
    assert rewritten["files"] == meta["files"]
    load_model(model_dir)  # the weights' checksums still match


def test_the_shipped_model_stores_no_absolute_path():
    meta = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())

    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        if isinstance(value, list):
            return [s for v in value for s in strings(v)]
        return [value] if isinstance(value, str) else []

    assert [s for s in strings(meta) if Path(s).is_absolute()] == []


@pytest.mark.parametrize("model_dir", sorted(p.parent for p in DEFAULT_MODEL_DIR.parent.glob("*/MODEL_CARD.md")
                                              if (p.parent / "model.json").is_file()))
def test_every_scan_a_model_saw_is_named_in_its_card(model_dir):
    """A reader of the model card must learn every scan (image or label map) the model trained on: each file of
    ``training.seen_in_training`` is named in MODEL_CARD.md (VerSe masks by their folder, ``verse_masks``)."""
    card = (model_dir / "MODEL_CARD.md").read_text(encoding="utf-8")
    seen = json.loads((model_dir / "model.json").read_text())["training"].get("seen_in_training", [])
    named = [Path(entry["file"]).name in card or ("verse_masks" in entry["file"] and "verse_masks" in card)
             for entry in seen]
    missing = [entry["file"] for entry, is_named in zip(seen, named) if not is_named]
    assert not missing, f"{model_dir.name}/MODEL_CARD.md does not name {missing}"
