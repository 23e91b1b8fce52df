"""Training patches drawn by worker processes (training/patch_stream.py) on the real TPTBox crop and a real VerSe
mask (synthesis source)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from SpineSegmentationLib.models import Preprocessing
from SpineSegmentationLib.training import train
from SpineSegmentationLib.training.data import TrainingData
from SpineSegmentationLib.training.patch_stream import PatchStream, one_thread_per_worker, patch_batches
from SpineSegmentationLib.training.readers import Case, find_verse_cases
from SpineSegmentationLib.training.sampler import PatchSampler

from training_helpers import tiny_config


@pytest.fixture(scope="module")
def data(tptbox_ct, tptbox_labels, verse_masks_dir) -> TrainingData:
    cases = [Case("tptbox", tptbox_ct, tptbox_labels, "verse", "train")]
    mask = find_verse_cases(verse_masks_dir)[0]
    cases.append(Case(mask.name, None, mask.labels, mask.convention, "train"))
    return TrainingData(cases, Preprocessing(spacing_mm=2.5), pool_size=1, synthetic_fraction=0.5,
                        rng=np.random.default_rng(0))


def _sampler() -> PatchSampler:
    return PatchSampler(32, -1.0, "up", 6.0 / 2.5, 8.0, 0.1, 0.02, True, 1000.0, 0.7, 20.0, 0.1, 0.25)


def _first_images(stream, count):
    batches = iter(stream)
    return [np.concatenate([p.image.ravel() for p in next(batches)]) for _ in range(count)]


def test_the_stream_gives_batches_and_refreshes_the_synthetic_pool(data):
    before = data.synthetic_generated
    batches = iter(PatchStream(data, _sampler(), batch_size=3, refresh_every=2, refresh_count=1, seed=(5, 0)))
    taken = [next(batches) for _ in range(5)]
    assert [len(b) for b in taken] == [3] * 5
    assert all(p.image.shape == (32, 32, 32) for b in taken for p in b)
    assert data.synthetic_generated - before == 2  # after the 2nd and the 4th batch


def test_the_stream_follows_its_seed(data):
    same = _first_images(PatchStream(data, _sampler(), 2, 1000, 1, (7, 0)), 2)
    again = _first_images(PatchStream(data, _sampler(), 2, 1000, 1, (7, 0)), 2)
    resumed = _first_images(PatchStream(data, _sampler(), 2, 1000, 1, (7, 250)), 2)
    assert all(np.array_equal(a, b) for a, b in zip(same, again))
    assert not any(np.array_equal(a, b) for a, b in zip(same, resumed))


class _ThreadCounts(torch.utils.data.IterableDataset):
    def __iter__(self):
        while True:
            yield torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()


def test_worker_processes_draw_different_patches_on_one_thread_each(data):
    batches = patch_batches(data, _sampler(), 1, 1000, 1, (3, 0), workers=2)
    images = [next(batches)[0].image for _ in range(4)]
    assert len({im.tobytes() for im in images}) == 4
    loader = torch.utils.data.DataLoader(_ThreadCounts(), batch_size=None, num_workers=1,
                                         worker_init_fn=one_thread_per_worker)
    assert list(next(iter(loader))) == [1, 1]  # torch and ITK threads in the worker
    with pytest.raises(ValueError, match="at least one worker"):
        patch_batches(data, _sampler(), 1, 1000, 1, (3, 0), workers=0)


def test_training_with_worker_processes(tmp_path, capsys, verse_masks_dir):
    from SpineSegmentationLib.cli import main

    config = tmp_path / "tiny.json"
    cfg = tiny_config(tmp_path, 3)
    cfg["data"].update(synthetic_masks_root=str(verse_masks_dir), synthetic_pool_size=1, synthetic_refresh_every=1)
    config.write_text(json.dumps(cfg))
    assert main(["train", str(config), "-o", str(tmp_path / "run"), "--device", "cpu", "--workers", "2"]) == 0
    assert "patches drawn by 2 worker processes" in capsys.readouterr().out
    meta = json.loads((tmp_path / "run" / "spineseg-tiny" / "model.json").read_text())
    assert meta["training"]["fcn_iterations"] == 3
    assert meta["training"]["hardware"]["patch_workers"] == 2
    # the pool of one made here, then one new volume per batch in the workers (by their schedule)
    assert meta["training"]["data"]["synthetic_volumes_generated"] == 1 + 3
    assert "refreshes made by the 2 patch workers" in meta["training"]["data"]["synthetic_volumes_counted"]
    rows = (tmp_path / "run" / "loss_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]
    with pytest.raises(SystemExit):
        main(["train", str(config), "-o", str(tmp_path / "run2"), "--workers", "-1"])
    assert "must be 0 (the training process itself) or more" in capsys.readouterr().err
    with pytest.raises(ValueError, match="workers must be 0"):
        train(tiny_config(tmp_path, 3), tmp_path / "run2", device="cpu", workers=-1, progress=lambda _: None)
