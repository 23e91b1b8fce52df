"""``spineseg train --help`` says where the model goes, what a resume may change and every kind of training data (it
named neither RUNDIR/<name> nor the resumable settings, and as data only a VerSe folder and a manifest)."""

from __future__ import annotations

import re

import pytest

from SpineSegmentationLib.cli import main
from SpineSegmentationLib.training.trainer import RESUMABLE_CHANGES


@pytest.fixture
def train_help(capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    return re.sub(r"\s+", " ", capsys.readouterr().out)  # argparse wraps lines anywhere


def test_train_help_says_the_model_goes_to_the_run_folder_under_its_name(train_help):
    assert "The model is written to RUNDIR/<name> (the configuration's name)" in train_help, train_help


def test_train_help_names_every_setting_a_resume_may_change_and_no_other(train_help):
    resume = train_help.split("--resume ", 1)[1].split("--device", 1)[0]
    named = re.findall(r"\b(?:fcn_training\.)?([a-z_]+_(?:iterations|minutes|every))\b", resume)
    assert sorted(named) == sorted(key.split(".", 1)[1] for key in RESUMABLE_CHANGES), resume
    assert "fcn_training.max_iterations" in resume and "only" in resume


def test_train_help_names_every_kind_of_training_data(train_help):
    # the four data settings of which load_config requires one ("the training configuration names no data")
    for key in ("data.verse_root", "data.manifest", "data.synthetic_masks_root", "data.anatomy_maps"):
        assert key in train_help, key
    assert "image,labels,convention[,split][,teacher]" in train_help
