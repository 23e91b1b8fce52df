"""Human-readable model card (``MODEL_CARD.md``) of a trained model folder, written from its ``model.json``."""

from __future__ import annotations

import json
from pathlib import Path

from ..models import MODEL_JSON


def write_model_card(model_dir: str | Path, overwrite: bool = False) -> Path:
    """Write ``MODEL_CARD.md`` beside ``model.json`` (training data, schedule, losses, deviations from the paper).

    Raises:
        FileNotFoundError: no ``model.json`` in ``model_dir``.
        FileExistsError: the card exists and ``overwrite`` is False.
    """
    model_dir = Path(model_dir)
    meta_path = model_dir / MODEL_JSON
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found; pass a model folder written by `spineseg train`")
    card = model_dir / "MODEL_CARD.md"
    if card.exists() and not overwrite:
        raise FileExistsError(f"{card} exists; pass overwrite=True to replace it")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    t = meta.get("training", {})
    data = t.get("data", {})
    fcn, prep = meta["iterative_fcn"], meta["preprocessing"]
    cfg = t.get("config", {})
    tc = cfg.get("fcn_training", {})
    att = t.get("attention") or {}
    losses = t.get("final_losses") or {}
    lines = [
        f"# {meta['name']} {meta['version']} ({meta['modality']})",
        "",
        "Iterative FCN vertebra segmentation, labelling and completeness classification (Lessmann et al. 2019)",
        "with a sagittal attention network for spine localization (Sekuboyina et al. 2017).",
        "",
        "## Architecture and preprocessing",
        f"- canonical grid {prep['spacing_mm']} mm, HU window {prep['hu_window']}, normalized = (HU - "
        f"{prep['hu_offset']}) / {prep['hu_scale']}; attention net slices at {prep['localization_spacing_mm']} mm",
        f"- iterative FCN: patch {fcn['patch_size']}^3, {fcn['filters']} filters, {fcn['levels']} levels, "
        f"recognition paths {fcn['recognition_filters']} filters x {fcn['recognition_levels']} levels",
        f"- traversal direction: {meta['traversal']['direction']}",
        "",
        "## Training data",
        f"- real CT (train split): {', '.join(data.get('real_training_cases', [])) or 'none'}"
        + ("" if data.get("real_training_cases_complete", True) else
           " (incomplete: the checkpoint this run was resumed from did not record the CTs trained on before it)"),
        _validation_line(t),
        _synthetic_line(data),
        *_lineage_lines(t),
        "",
        "## Schedule and result",
        *_warm_start_lines(t),
        f"- FCN: {t.get('fcn_iterations')} iterations{' in this run' if t.get('warm_start') else ''} (schedule n_max "
        f"{t.get('fcn_max_iterations')}), {t.get('fcn_wall_seconds')} s wall clock, seed {t.get('seed')}; weights: "
        f"{t.get('weights', 'last iterate')}",
        f"- attention net{_attention_origin(t)}: {att.get('iterations')} iterations, {att.get('seconds', 0):.0f} s, "
        f"final MSE {att.get('final_loss', float('nan')):.5f}",
        f"- final FCN losses (running mean): {', '.join(f'{k} {v:.3f}' for k, v in losses.items())}",
        f"- hardware: {t.get('hardware')}, torch {t.get('torch')}",
        "",
        "## Deviations from the paper",
        f"- {prep['spacing_mm']} mm voxels and {fcn['patch_size']}^3 patches with {fcn['filters']} filters instead of "
        "1 mm, 128^3 and 84 filters (CPU training budget).",
        f"- FP_soft/FN_soft are voxel sums as in the paper, expressed in units of "
        f"{tc.get('segmentation_unit_voxels', 1000)} voxels so that segmentation, labelling and completeness terms "
        "start at comparable magnitudes with the smaller patch.",
        f"- surface-weight sigma = {tc.get('sigma_mm', 6)} mm (the paper's 6 voxels at 1 mm) = "
        f"{tc.get('sigma_mm', 6) / prep['spacing_mm']:.2f} voxels; gamma = {tc.get('gamma', 8)}.",
        f"- lambda schedule position: {tc.get('lambda_progress', 'max')} ('max' = the larger of the iteration and "
        "the wall-clock fraction, so the FP weight reaches 1 when the wall-clock budget ends the run).",
        "- output biases initialised to the data statistics (foreground prior 0.1, label 12).",
        f"- trained on {len(data.get('real_training_cases', []))} real CT(s) and "
        f"{'' if data.get('synthetic_volumes_generated_complete', True) else 'at least '}"
        f"{data.get('synthetic_volumes_generated', 0)} synthetic volume(s)"
        f"{' in this run, started from a model trained on others (see above)' if t.get('warm_start') else ''}, "
        "where the paper's CT model trained on 60 "
        "labelled CTs at 1 mm (seed 002, section 5): expect lower accuracy than its figures; validate on your data.",
        "",
    ]
    card.write_text("\n".join(lines), encoding="utf-8")
    return card


def _warm_start_lines(training: dict) -> list[str]:
    """The model a run started from (``fcn_training.init_from``): without this line a fine-tuned model's card reads
    as one trained from scratch in this run's iterations on this run's data."""
    warm = training.get("warm_start")
    if not warm:
        return []
    fresh = ", ".join(warm.get("reinitialized_modules") or []) or "none"
    return [f"- started from {warm.get('checkpoint')} (after its {warm.get('from_iteration')} FCN iterations, "
            f"{warm.get('from_fcn_seconds')} s): {warm.get('copied_tensors')} FCN tensors copied, modules initialized "
            f"afresh: {fresh}, batch-norm statistics: {warm.get('batch_norm_statistics', 'not recorded')}; what it "
            "trained on is in the lineage line above"]


def _attention_origin(training: dict) -> str:
    """" (copied from the model it started from)" for an attention net copied by a warm start, not trained again."""
    retrained = (training.get("config") or {}).get("attention_training", {}).get("retrain", False)
    return " (copied from the model it was started from)" if training.get("warm_start") and not retrained else ""


def _validation_line(training: dict) -> str:
    """The validation CTs, said to be never trained on only as far as the record shows it: the trainer refuses a
    validation CT that the run, its earlier sessions, the model it started from or a pseudo-label teacher trained on
    (by voxel digest, :mod:`.lineage`), which rules out a scan that a record left out only when the record is
    complete."""
    cases = ", ".join(training.get("data", {}).get("validation_cases", [])) or "none"
    if "seen_in_training" not in training:
        return f"- validation CT (not checked against what the model saw: no lineage recorded): {cases}"
    if not training.get("seen_in_training_complete", True):
        return (f"- validation CT (not trained on by this run; a model it was started or resumed from, or a "
                f"pseudo-label teacher, did not record what it saw, so it may have seen them): {cases}")
    return f"- held-out validation CT (never trained on, checked by voxel digest against all it saw): {cases}"


def _synthetic_line(data: dict) -> str:
    generated = data.get("synthetic_volumes_generated", 0)
    incomplete = ("" if data.get("synthetic_volumes_generated_complete", True) else
                  " (incomplete: the checkpoint this run was resumed from did not record the volumes generated before "
                  "it)")
    if not generated:
        return "- synthetic CT volumes: none" + (" in this session" + incomplete if incomplete else "")
    masks, maps = data.get("synthetic_source_masks") or [], data.get("synthetic_anatomy_maps") or []
    sources = ([f"real VerSe masks ({', '.join(masks)})"] if masks else []) + (
        [f"whole-anatomy label maps ({', '.join(maps)})"] if maps else [])
    return (f"- synthetic CT volumes generated from {' and '.join(sources) or 'nothing recorded'}: {generated}; share "
            f"of patches: {data.get('synthetic_fraction')}{incomplete}")


def _lineage_lines(training: dict) -> list[str]:
    """The scans seen across warm starts and the held-out scans (:mod:`.lineage`), as model-card lines."""
    if "seen_in_training" not in training:
        return ["- scans seen across warm starts: not recorded (a model written before lineages were recorded)"]
    seen = ", ".join(entry["file"] for entry in training["seen_in_training"]) or "none"
    lines = [f"- scans and label maps seen in training, the models it was started from included: {seen}"
             + ("" if training.get("seen_in_training_complete", True) else
                " (incomplete: a model it was started from did not record its own)")]
    held_out = ", ".join(entry["file"] for entry in training.get("held_out", []))
    if held_out:
        lines.append(f"- held out (checked by voxel digest against all of the above): {held_out}")
    return lines
