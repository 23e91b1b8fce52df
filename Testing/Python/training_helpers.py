"""A tiny training configuration on the real TPTBox crop, for tests that run ``train`` end to end in seconds."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "Resources" / "TrainingConfigs"
TPTBOX = REPO.parent / "shared" / "data" / "ct" / "tptbox_lumbar_crop"


def tiny_config(tmp_path: Path, max_iterations: int, held_out=(), init_from: str | None = None) -> dict:
    """``tiny_test.json`` training on the TPTBox crop alone (a manifest written into ``tmp_path``), checkpointing
    every 2 iterations, with ``data.held_out`` and ``fcn_training.init_from`` as given."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,labels,convention,split\n"
                        f"{TPTBOX / 'sub-ct_label-22_ct.nii.gz'},{TPTBOX / 'sub-ct_seg-vert_label-22_msk.nii.gz'},verse,train\n")
    cfg = json.loads((CONFIGS / "tiny_test.json").read_text())
    cfg["data"] = {"manifest": str(manifest), "synthetic_masks_root": None, "held_out": [str(p) for p in held_out]}
    cfg["fcn_training"].update(max_iterations=max_iterations, checkpoint_every=2, log_every=1, init_from=init_from)
    return cfg
