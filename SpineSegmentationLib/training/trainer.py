"""The training command: attention network, then iterative FCN, then a model folder (seed 002 section 3.6,
seed 001 section 2.1).

``train(config, output_dir)`` writes into ``output_dir``:

- ``config.json``: the resolved configuration of the run,
- ``checkpoint.pt``: networks (with ``fcn_training.ema_decay`` also the weights' moving average), optimizer,
  iteration, elapsed time and RNG states (every
  ``fcn_training.checkpoint_every`` iterations and at the end; ``resume=True`` continues from it),
- ``loss_log.csv`` and ``loss_curve.png``: the FCN losses (running means over ``log_every`` iterations),
- ``<name>/``: the model folder (:func:`~SpineSegmentationLib.models.save_model`) with the training provenance
  and a ``MODEL_CARD.md`` (:func:`~.model_card.write_model_card`).

Optimizer: Adam, lr 1e-3, betas (0.99, 0.999) (the paper's "momentum 0.99"). Mixed precision (bf16 autocast)
on CUDA only. With ``workers > 0`` the patches are drawn by that many worker processes
(:class:`~.patch_stream.PatchStream`), so that a GPU is not left waiting for the CPU; the run is then not
bit-for-bit reproducible (the workers run side by side). The FP weight lambda follows
:func:`~.losses.lambda_schedule` over ``max_iterations``; with
``fcn_training.lambda_progress = "max"`` (default) the schedule position is the larger of the iteration
fraction and the wall-clock fraction of ``max_wall_minutes``, so the schedule completes even when the
wall-clock budget ends the run before ``max_iterations``.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..errors import Interrupted, OutputExistsError, OutputWriteError, SpineSegmentationError
from ..models import Postprocessing, SpineModel, load_model, save_model
from ..networks import AttentionNet, IterativeFCN
from ..outputs.staging import describe_write_error
from ..pipeline import resolve_device
from ..preprocessing import cut_body_values, pad_value
from ..threads import torch_threads, usable_cores
from .attention_training import sagittal_examples, train_attention
from .config import DEFAULTS, check_seed, load_config, model_sections
from .data import TrainingData, collect_cases
from .losses import iterative_fcn_loss, lambda_schedule
from .lineage import (
    check_held_out, check_validation_apart, held_out_validation, inherited_lineage, merge, resumed_lineage, run_digest,
    seen_entries, teacher_lineage, training_files, validation_entries,
)
from .model_card import write_model_card
from .patch_stream import patch_batches
from .sampler import Patch, PatchSampler

CHECKPOINT = "checkpoint.pt"
LOG_FIELDS = ["iteration", "elapsed_s", "lambda", "total", "fp", "fn", "label", "completeness", "validation_total"]


def batch_tensors(patches: list[Patch], device: torch.device) -> dict[str, torch.Tensor]:
    """Stack patches into network input (N, 2, P, P, P) and targets."""
    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)
    return {
        "input": t(np.stack([np.stack([p.image, p.memory]) for p in patches])),
        "target": t(np.stack([p.target[None] for p in patches])),
        "weights": t(np.stack([p.weights[None] for p in patches])),
        "label": t(np.array([p.label for p in patches], dtype=np.float32)),
        "complete": t(np.array([p.complete for p in patches], dtype=np.float32)),
    }


def initialize_output_biases(net: IterativeFCN, foreground_prior: float = 0.1, mean_label: float = 12.0) -> None:
    """Start the output layers near the data's statistics (not in the paper; it only shortens the first
    few hundred iterations): segmentation bias = logit(``foreground_prior``) (a vertebra fills ~10 % of a
    patch instead of the 50 % implied by a zero bias) and label bias = ``mean_label`` (the middle of the
    1..24 scale; the L1 loss otherwise climbs from 0 in steps of the learning rate)."""
    with torch.no_grad():
        net.segmentation_head.bias.fill_(float(np.log(foreground_prior / (1 - foreground_prior))))
        net.label_path.dense.bias.fill_(mean_label)


def fcn_step(net: IterativeFCN, batch: dict, lam: float, unit_voxels: float, device: torch.device):
    """Forward pass + loss (bf16 autocast on CUDA); returns :class:`~.losses.LossTerms`."""
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = net(batch["input"])
    return iterative_fcn_loss(out.segmentation_logits, out.label, out.completeness_logits, batch["target"],
                              batch["weights"], batch["label"], batch["complete"], lam, unit_voxels)


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Loss curve PNG from the CSV log (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    it = np.array([float(r["iteration"]) for r in rows])
    fig, ax = plt.subplots(figsize=(8, 5))
    for key in ("total", "fp", "fn", "label", "completeness"):
        ax.plot(it, [float(r[key]) for r in rows], label=key, lw=1)
    val = [(float(r["iteration"]), float(r["validation_total"])) for r in rows if r["validation_total"]]
    if val:
        ax.plot(*zip(*val), "ko-", label="validation total", ms=3)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (running mean)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def _rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


def _restore_rng(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])


def _validation_loss(net, patches, lam, unit_voxels, device) -> float | None:
    """The mean loss of the network in evaluation mode on the validation ``patches``; None when there are none (a run
    without a validation CT logs no validation loss, rather than "nan")."""
    if not patches:
        return None
    net.eval()
    with torch.no_grad():
        total = float(np.mean([fcn_step(net, batch_tensors([p], device), lam, unit_voxels, device).total.item()
                               for p in patches]))
    net.train()
    return total


def _model_as_checkpoint(model_dir: Path) -> dict:
    """A model folder's networks and training provenance in the layout of ``checkpoint.pt``."""
    model = load_model(model_dir)
    training = model.training or {}
    return {"fcn": model.fcn.state_dict(), "attention_net": model.attention.state_dict(),
            "state": {"iteration": training.get("fcn_iterations", 0),
                      "fcn_seconds": float(training.get("fcn_wall_seconds", 0.0)),
                      "attention": training.get("attention")}}


def _lineage(cfg: dict, digest, resumed: dict | None = None) -> tuple[dict, list[dict]]:
    """The scans this run, the model it starts from and its pseudo-label teachers saw, and the held-out scans
    (:mod:`.lineage`), after checking that none of ``data.held_out`` is among the former (raises
    :class:`~.lineage.HeldOutLeakError`) nor any validation CT (raises :class:`SpineSegmentationError`); and the
    validation CTs' lineage entries. ``digest``: the run's :func:`~.lineage.run_digest`.

    ``resumed``: the ``state`` of the checkpoint a resumed run continues from. Its ``seen_in_training`` holds what the
    model named in ``fcn_training.init_from`` saw (merged in when the run began), and
    :func:`~.lineage.resumed_lineage` checks the held-out and validation scans against it: that model is not read
    again, so a resume needs neither its weights (the checkpoint has them) nor its folder, which may be gone or hold
    another model by now. Only a checkpoint written before lineages were recorded makes the resume read it, where it
    still is (else the lineage is marked incomplete)."""
    data, init_from = cfg["data"], cfg["fcn_training"]["init_from"]
    cases = collect_cases(data)
    own = seen_entries(training_files(cases, data["anatomy_maps"]), digest)
    validation = validation_entries(cases, digest)
    check_validation_apart(validation, own)
    held_out = seen_entries([Path(path) for path in data["held_out"]], digest)
    if resumed is not None and "seen_in_training" in resumed:
        inherited, complete = [], True  # in the checkpoint's record, which resumed_lineage merges and checks
    elif resumed is not None and init_from and not Path(init_from).exists():
        if held_out:  # what that model saw cannot be checked against them, and the checkpoint does not record it
            raise SpineSegmentationError(
                f"the model this run started from (fcn_training.init_from {init_from}) is gone, and the checkpoint "
                "was written before checkpoints recorded what it was trained on, so data.held_out cannot be checked "
                "against it: restore that model folder to resume this run")
        inherited, complete = [], False
    else:
        inherited, complete = inherited_lineage(init_from)
    taught, unrecorded_teachers = teacher_lineage(cases, resumed, digest)
    check_held_out(held_out, own, inherited, complete, init_from, taught, unrecorded_teachers)
    check_validation_apart(validation, inherited, f"the model it starts from (fcn_training.init_from {init_from}) "
                           "trained on", "its loss would be no held-out measure and the model card would call it never "
                           "trained on. Validate on a scan that model never saw (move this one to the train split or "
                           "leave it out), or start from scratch")
    check_validation_apart(validation, taught, "a pseudo-label teacher (the manifest's teacher column) trained on",
                           "the teacher's labels carry what it learned from it. Validate on a scan the teacher never "
                           "saw, or label the cases with a model that never saw it")
    lineage = {"seen_in_training": merge(merge(own, inherited), taught),
               "seen_in_training_complete": complete and not unrecorded_teachers, "held_out": held_out}
    return lineage, validation


def warm_start(fcn: IterativeFCN, attention: AttentionNet, state: dict, checkpoint: Path, dev,
               retrain_attention: bool = False) -> dict:
    """Initialize from an earlier run's ``checkpoint.pt`` or a model folder (config ``fcn_training.init_from``).

    FCN parameters whose name and shape match are copied, with the batch-norm running averages where both
    networks have them (normalization statistics that the new configuration does not have, e.g. when switching
    to instance normalization, are dropped; before 2026-12-06 they were dropped always, so a batch-norm model
    started from another began with mean 0 and variance 1; from instance to batch normalization they start at 0 and
    1, and the record says so); the attention network is copied whole and not trained again, unless
    ``retrain_attention`` (``attention_training.retrain``): then it is trained again, from the copy where it has the
    same size, else afresh.

    Returns:
        What was copied and what was left at its initialization, for the training provenance.

    Raises:
        FileNotFoundError: no such checkpoint.
    """
    if checkpoint.is_dir():
        ckpt = _model_as_checkpoint(checkpoint)
    elif checkpoint.is_file():
        ckpt = torch.load(checkpoint, map_location=dev, weights_only=False)
    else:
        raise FileNotFoundError(f"fcn_training.init_from: {checkpoint} does not exist; give an earlier run's "
                                "checkpoint.pt or a model folder (model.json + safetensors)")
    own, old = fcn.state_dict(), ckpt["fcn"]

    def statistic(key: str) -> bool:  # batch-norm running averages: buffers, not parameters
        return key.endswith(("running_mean", "running_var", "num_batches_tracked"))

    def group(key: str) -> str:  # encoders.0 / decoders.1 / segmentation_head / label_path / completeness_path
        parts = key.split(".")
        return ".".join(parts[:2]) if parts[0] in ("encoders", "decoders") else parts[0]

    def parameters(state_dict: dict) -> dict:  # group -> {parameter name: shape}
        out: dict = {}
        for k, v in state_dict.items():
            if not statistic(k):
                out.setdefault(group(k), {})[k] = v.shape
        return out

    # a module is copied only when all its parameters match in name and shape; its batch-norm statistics with it
    # where both networks keep them (batch to batch normalization), else they start afresh
    mine, theirs = parameters(own), parameters(old)
    copied = {k: v for k, v in old.items()
              if k in own and own[k].shape == v.shape and mine.get(group(k)) == theirs.get(group(k))}
    fcn.load_state_dict(copied, strict=False)
    try:
        attention.load_state_dict(ckpt["attention_net"])
    except RuntimeError as error:
        if not retrain_attention:
            mismatch = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line),
                            str(error).splitlines()[-1].strip())
            raise SpineSegmentationError(
                f"fcn_training.init_from {checkpoint}: its attention network does not fit this configuration's "
                f"attention_net ({mismatch}); give attention_net the settings of the model it starts from, or set "
                "attention_training.retrain to train a new one") from None
    state["attention"] = ckpt["state"]["attention"]
    fresh = sorted({k.split(".")[0] for k in own if k not in copied and not statistic(k)})
    statistics = [k for k in own if statistic(k)]
    kept = "none (no batch normalization)" if not statistics else (
        "copied" if all(k in copied for k in statistics) else "fresh (mean 0, variance 1)")
    return {"checkpoint": str(checkpoint), "from_iteration": ckpt["state"]["iteration"],
            "from_fcn_seconds": round(ckpt["state"]["fcn_seconds"], 1), "copied_tensors": len(copied),
            "reinitialized_modules": fresh, "batch_norm_statistics": kept}


#: CPU threads of a training run when the caller names none (fewer where the process may use fewer cores).
DEFAULT_TRAIN_THREADS = 2


def training_threads(num_threads: int | None) -> int:
    """The CPU thread count :func:`train` runs with: ``num_threads`` as given (a count above the cores this process
    may use is warned about when it is applied), or for None ``min(DEFAULT_TRAIN_THREADS, usable_cores())``, so
    that the default never asks for more threads than cores and is not warned about. 0 means "leave torch's
    setting"."""
    if num_threads is None:
        return min(DEFAULT_TRAIN_THREADS, usable_cores())
    return int(num_threads)


def train(config: str | Path | dict, output_dir: str | Path, resume: bool = False, device: str = "auto",
          seed: int | None = None, num_threads: int | None = None, workers: int = 0, progress=print) -> Path:
    """Train the attention network and the iterative FCN; write checkpoints, logs and a model folder.

    Args:
        config: training configuration (JSON path or dict, see :mod:`.config`).
        output_dir: run folder (created; must not hold a checkpoint unless ``resume``).
        resume: continue from ``output_dir/checkpoint.pt`` (networks, optimizer, iteration, elapsed time, RNG).
        device: "auto", "cpu" or "cuda".
        seed: overrides the configuration's seed.
        num_threads: ``torch.set_num_threads`` while training on the CPU; None: ``min(2, cores this process may
            use)`` (:func:`training_threads`); 0: leave torch's setting. An explicit count above the usable cores
            is warned about (``UserWarning``). The caller's setting is restored on return; the count used is
            recorded in ``model.json`` (``training.hardware.threads``) and the model card.
        workers: processes that draw the training patches (0: the training process itself, reproducible from
            the seed; more keep a GPU busy: at 2.5 mm one worker draws about 9 patches/s). Recorded in the
            model card.
        progress: callable receiving progress lines.

    Returns:
        Path of the written model folder.

    Raises:
        OutputExistsError: ``output_dir`` holds a checkpoint and ``resume`` is False.
        FileNotFoundError: ``resume`` without a checkpoint; missing data files.
        ValueError: invalid configuration or no training data; ``workers`` < 0.
        SpineSegmentationError: a validation CT is a scan that the run trains on, that the model it starts from or
            a pseudo-label teacher saw, or (``resume``) that the checkpoint records as trained on: the model card
            would call it never trained on (:func:`~.lineage.check_validation_apart`); nothing is written.
        DeviceError: ``device`` is unknown or not usable here (e.g. "cuda" without a GPU); raised before
            ``output_dir`` is created or anything is written.
    """
    with torch_threads(training_threads(num_threads)):
        if int(workers) < 0:
            raise SpineSegmentationError(
                f"workers must be 0 (draw patches in the training process) or more, got {workers}")
        dev = resolve_device(device)  # an unusable device fails here, before the run folder is made
        cfg, out, run = load_config(config), Path(output_dir), None
        try:
            run = _TrainingRun(cfg, out, resume, dev, seed, progress, int(workers))
            run.load_data()
            if run.state["attention"] is None:
                run.train_attention()
            run.train_fcn()
            return run.write_model()
        except KeyboardInterrupt as stop:
            left = _left_behind(out, cfg, run.state["iteration"] if run is not None else None)
            raise Interrupted.of(stop, f"; {left}") from None


def _check_run_folder_free(out: Path, cfg: dict) -> None:
    """Refuse a new run in a folder holding files it would overwrite, unless they are those of an earlier start of
    the same configuration that stopped before its first checkpoint (its ``config.json`` equals this run's): their
    loss log and curve are removed then, and the run starts again.

    A model folder (one holding ``model.json``, e.g. the shipped ``Resources/Models/spineseg-default``) is refused:
    the run would put its checkpoint, logs and a second model folder into it.

    Raises:
        OutputExistsError: names the files and the fix; for the files of an earlier start with another configuration
            (e.g. one that stopped on its data and was fixed since) also the settings that differ.
    """
    if (out / "model.json").is_file():
        raise OutputExistsError(f"{out} is a model folder (it holds model.json): a training run writes its checkpoint, "
                                "logs and its own model folder into its run folder, which would mix them into this "
                                "model; choose a new run folder (-o), e.g. runs/my-run (to start from this model, "
                                "name it in fcn_training.init_from)")
    start_files = ("config.json", "loss_log.csv", "loss_curve.png")  # what a start writes before its checkpoint
    names = list(start_files) + ([str(cfg["name"])] if cfg.get("name") else [])
    taken = [name for name in names if (out / name).exists()]
    only_a_start = set(taken) <= set(start_files)
    config = out / "config.json"
    restart = config.is_file() and config.read_text(encoding="utf-8") == json.dumps(cfg, indent=2) + "\n"
    if taken and not (restart and only_a_start):
        earlier = _earlier_start(config, cfg) if only_a_start else []
        if earlier:
            raise OutputExistsError(
                f"{out} holds the config.json of an earlier start that stopped before its first checkpoint, with "
                f"another configuration ({', '.join(earlier[:5])}{' ...' if len(earlier) > 5 else ''} "
                f"{'differs' if len(earlier) == 1 else 'differ'}); it is kept: to start this configuration there, "
                f"delete {', '.join(str(out / name) for name in taken)}, or choose a new run folder (-o)")
        raise OutputExistsError(f"{out} already holds {', '.join(taken)}, which a new training run would "
                                "overwrite; choose a new run folder (-o), e.g. one next to your configuration")
    for name in start_files[1:]:  # the loss log and curve
        if restart and (out / name).exists():
            (out / name).unlink()


def _earlier_start(config: Path, cfg: dict) -> list[str]:
    """The settings in which ``config`` (a run folder's ``config.json``) differs from ``cfg``, where it is the complete
    configuration that :func:`train` writes there (every section and key of :data:`~.config.DEFAULTS`), i.e. that of
    an earlier start of a run; [] for any other file (e.g. a configuration of the user's named config.json)."""
    try:
        saved = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    if not (isinstance(saved, dict) and set(saved) == set(DEFAULTS) and all(
            isinstance(saved[key], dict) and set(saved[key]) == set(section)
            for key, section in DEFAULTS.items() if isinstance(section, dict) and section)):
        return []
    return _differences(saved, json.loads(json.dumps(cfg)))


#: The settings a resumed run may change: how long it trains and how often it logs and saves. Anything else (data,
#: seed, optimizer, networks, losses) would make the model differ from what its config.json and lineage record.
RESUMABLE_CHANGES = ("fcn_training.max_iterations", "fcn_training.max_wall_minutes", "fcn_training.checkpoint_every",
                     "fcn_training.log_every")


def _check_resume(out: Path, cfg: dict) -> None:
    """Refuse to resume a run with a configuration that differs from its ``config.json`` in more than
    :data:`RESUMABLE_CHANGES`.

    Raises:
        SpineSegmentationError: names the differing settings and the fix.
    """
    saved_path = out / "config.json"
    if not saved_path.is_file():
        raise SpineSegmentationError(f"cannot resume: {saved_path} is missing, so the run's configuration is unknown; "
                                     "start a new run folder (-o)")
    saved = json.loads(saved_path.read_text(encoding="utf-8"))
    changed = [key for key in _differences(saved, json.loads(json.dumps(cfg))) if key not in RESUMABLE_CHANGES]
    if changed:
        raise SpineSegmentationError(
            f"cannot resume {out} with another configuration: {', '.join(changed)} "
            f"{'differs' if len(changed) == 1 else 'differ'} from {saved_path}, and the "
            f"checkpoint was trained with those. Resume with {saved_path} (only {', '.join(RESUMABLE_CHANGES)} may "
            "change), or start a new run folder (-o), with fcn_training.init_from naming its checkpoint.pt to start "
            "from its weights")


def _left_behind(out: Path, cfg: dict, reached: int | None) -> str:
    """What a stopped run leaves in its folder ``out``, and how to go on (``reached``: the iteration it had reached,
    None when it stopped while starting)."""
    checkpoint = out / CHECKPOINT
    if not checkpoint.is_file():
        return (f"no checkpoint was written yet (every {cfg['fcn_training']['checkpoint_every']} iterations): run the "
                f"same command again to start over in {out}")
    try:
        saved = f"iteration {torch.load(checkpoint, map_location='cpu', weights_only=False)['state']['iteration']}"
    except Exception as error:  # noqa: BLE001 - the message is about the interrupt; its exit status must stay
        saved = f"the last checkpoint (unreadable now: {type(error).__name__})"
    of = f" (of {reached} reached)" if reached is not None else ""
    return f"{checkpoint} keeps {saved}{of}; the same command with --resume continues from it"


def _limits_reached(state: dict, tc: dict) -> list[str]:
    """The FCN budget limits (``fcn_training``) a run has reached, as message parts; it trains while there are none."""
    reached = []
    if state["iteration"] >= int(tc["max_iterations"]):
        reached.append(f"fcn_training.max_iterations ({state['iteration']} reached)")
    if state["fcn_seconds"] >= 60.0 * float(tc["max_wall_minutes"]):
        reached.append(f"fcn_training.max_wall_minutes ({state['fcn_seconds'] / 60:.1f} reached)")
    return reached


def _trim_log(path: Path, iteration: int) -> None:
    """Drop the loss-log rows written after the checkpoint a run resumes from: they are trained again."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [row for row in rows[1:] if row and int(row[0]) <= iteration]
    if len(kept) < len(rows):
        with open(path, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(kept)


def _differences(a, b, where: str = "") -> list[str]:
    """Dotted names of the settings that differ between two configuration dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [name for key in sorted(set(a) | set(b)) for name in
                _differences(a.get(key), b.get(key), f"{where}{key}.")]
    return [] if a == b else [where.rstrip(".")]


class _TrainingRun:
    """The state of one :func:`train` call: configuration, networks, optimizer, progress counters, data."""

    def __init__(self, cfg: dict, out: Path, resume: bool, device: torch.device, seed: int | None, progress,
                 workers: int = 0) -> None:
        if seed is not None:
            cfg["seed"] = check_seed(seed, "the seed option (--seed)")
        self.cfg, self.out, self.resume, self.progress = cfg, out, resume, progress
        self.workers = workers
        self.ckpt_path = out / CHECKPOINT
        if resume and not self.ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {self.ckpt_path} does not exist (no run in {out}, or one that "
                                    "stopped before its first checkpoint); run the same command without --resume to "
                                    "start the run")
        if not resume and self.ckpt_path.exists():
            raise OutputExistsError(f"{out} already holds a training run; pass resume=True (--resume) or choose "
                                    "another folder")
        if resume:
            _check_resume(out, cfg)
        else:
            _check_run_folder_free(out, cfg)
        ckpt = torch.load(self.ckpt_path, map_location=device, weights_only=False) if resume else None
        self.digest = run_digest()  # each scan digested once in this run
        self.lineage, validation = _lineage(cfg, self.digest, ckpt["state"] if resume else None)
        out.mkdir(parents=True, exist_ok=True)
        self.dev = device
        self.rng = np.random.default_rng(cfg["seed"])
        torch.manual_seed(cfg["seed"])
        random.seed(cfg["seed"])
        sections = model_sections(cfg)
        self.prep, self.traversal, self.localization = (sections[k] for k in ("preprocessing", "traversal",
                                                                              "localization"))
        self.fcn_cfg, self.att_cfg = sections["iterative_fcn"], sections["attention_net"]
        self.tc, self.ac, self.dc = cfg["fcn_training"], cfg["attention_training"], cfg["data"]
        self.pad = pad_value(self.prep)
        self.fcn = IterativeFCN(self.fcn_cfg).to(self.dev)
        self.attention = AttentionNet(self.att_cfg).to(self.dev)
        self.optimizer = torch.optim.Adam(self.fcn.parameters(), lr=self.tc["learning_rate"],
                                          betas=tuple(self.tc["betas"]))
        self.state = {"iteration": 0, "fcn_seconds": 0.0, "attention": None}
        self.last_losses = None
        initialize_output_biases(self.fcn)
        self.ema = None
        if self.tc.get("init_from") and not resume:
            self.state["warm_start"] = warm_start(self.fcn, self.attention, self.state, Path(self.tc["init_from"]),
                                                  self.dev, bool(self.ac.get("retrain")))
            progress(f"warm start from {self.tc['init_from']}: {self.state['warm_start']}")
            if self.ac.get("retrain"):
                self.state["attention"] = None
        if resume:
            self.fcn.load_state_dict(ckpt["fcn"])
            self.attention.load_state_dict(ckpt["attention_net"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.state = ckpt["state"]
            # keeps what the checkpoint trained on, and refuses a validation CT among it
            self.lineage = resumed_lineage(self.lineage, self.state, validation)
            _restore_rng(self.rng, ckpt["rng"])
            model = out / str(cfg["name"])
            spent = _limits_reached(self.state, self.tc)
            if (model / "model.json").is_file() and spent:
                raise SpineSegmentationError(
                    f"the run in {out} has finished and its model is {model}: nothing is left to train. Raise "
                    f"{' and '.join(spent)} to train on (the model folder is then written again)")
            _trim_log(out / "loss_log.csv", self.state["iteration"])
            progress(f"resumed from {self.ckpt_path} at iteration {self.state['iteration']}")
        # also on resume: the budget it runs on now
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        if self.tc["ema_decay"] > 0:  # the average starts at the weights after the first step
            self.ema = AveragedModel(self.fcn, multi_avg_fn=get_ema_multi_avg_fn(self.tc["ema_decay"]))
            if resume:
                if "fcn_ema" not in ckpt:  # a hand-edited config.json: _check_resume refuses a changed ema_decay
                    raise SpineSegmentationError(
                        f"{self.ckpt_path} holds no weight average (fcn_training.ema_decay was 0 when it was "
                        "written); resume with ema_decay 0 or start a new run")
                self.ema.load_state_dict(ckpt["fcn_ema"])
        self.state.update(self.lineage)

    def load_data(self) -> None:
        self.progress("loading training data ...")
        t0 = time.monotonic()
        dc = self.dc
        cases = collect_cases(dc)
        if self.state["attention"] is None and self.ac["synthetic_volumes"] == 0 and not any(
                case.image is not None and case.split == "train" for case in cases):
            no_ct = [case.name for case in cases
                     if case.image is None and case.split == "train" and not case.synthesis_source]
            raise SpineSegmentationError(
                "the attention network has nothing to train on: the run has no train-split CT"
                + (f" (no CT was found for the mask(s) {', '.join(no_ct)}: the CT of <prefix>_seg-vert_msk.nii.gz "
                   "must be named <prefix>_ct.nii.gz or <prefix>_ct.nii, under the same VerSe folder)" if no_ct else "")
                + " and attention_training.synthetic_volumes is 0; set attention_training.synthetic_volumes > 0 "
                "to train it on synthetic CTs, or give the run a CT")
        held_out = held_out_validation(cases, self.state["held_out"], self.digest)
        if held_out:
            cases = [case for case in cases if case not in held_out]
        self.data = TrainingData(cases, self.prep, dc["synthetic_pool_size"], dc["synthetic_fraction"],
                                 self.rng, dc["anatomy_maps"], dc["anatomy_synthesis_share"],
                                 dc["composite_column_share"], dc["pseudo_label_ignore_mm"])
        data = self.data
        self._record_real_cases(data.real_names)
        self._start_synthetic_count()
        for line in data.split_lines():
            self.progress(line)
        if held_out:
            self.progress(f"validation/test split, CT(s) named in data.held_out, left out of the validation loss (a "
                          f"held-out scan gives no number while the run is made): "
                          f"{', '.join(case.name for case in held_out)}")
        self.progress(f"{len(data.real)} real training CT(s), {len(data.validation)} validation CT(s), "
                      f"{len(data.masks)} mask(s) and {len(data.anatomy_maps)} anatomy map(s) for synthesis, pool of "
                      f"{len(data.pool)} synthetic volumes ({time.monotonic() - t0:.1f} s)")

    def _record_real_cases(self, now: list[str]) -> None:
        """Keep in the state (and so in the checkpoint) the real CTs every session of this run trained on: a resumed
        run's model folder lists those of the sessions before it too, although its data folder may hold others now.
        A checkpoint written before this record was kept gives no such list: the record is then marked incomplete."""
        state = self.state
        if self.resume and "real_training_cases" not in state:
            state["real_training_cases_complete"] = False
            self.progress(f"warning: {self.ckpt_path} does not record the real CTs trained on before it; the model "
                          "folder lists those of this session and says the list is incomplete")
        state["real_training_cases"] = list(dict.fromkeys([*state.get("real_training_cases", []), *now]))
        state.setdefault("real_training_cases_complete", True)

    def _start_synthetic_count(self) -> None:
        """Start this session's count of synthetic volumes on the total of the sessions before it, which the state
        (and so the checkpoint) keeps as ``synthetic_volumes_generated``; a checkpoint written before that total was
        kept gives none: the total is then marked incomplete (``synthetic_volumes_generated_complete``)."""
        state = self.state
        if self.resume and "synthetic_volumes_generated" not in state:
            state["synthetic_volumes_generated_complete"] = False
            self.progress(f"warning: {self.ckpt_path} does not record the synthetic volumes generated before it; the "
                          "model folder counts those of this session and says the count is incomplete")
        state.setdefault("synthetic_volumes_generated_complete", True)
        self.synthetic_before = int(state.get("synthetic_volumes_generated", 0))
        self.session_start_iteration = int(state["iteration"])
        if self.workers and self.data.pool:  # the workers' refreshes happen in their processes: counted by schedule
            state["synthetic_volumes_counted"] = (f"the pools made in the training process plus the refreshes made "
                                                  f"by the {self.workers} patch workers (their schedule; within a few)")

    def _synthetic_total(self) -> int:
        """The synthetic volumes every session of this run has generated up to now: the sessions' before (from the
        checkpoint) and this one's, whose patch workers' refreshes, made in their processes, are counted by their
        schedule (``synthetic_refresh_count`` every ``synthetic_refresh_every`` batches, as TrainingData.refresh)."""
        session = self.data.synthetic_generated
        if self.workers and self.data.pool:
            per_refresh = min(self.dc["synthetic_refresh_count"], len(self.data.pool))
            batches = self.state["iteration"] - self.session_start_iteration
            session += batches // self.dc["synthetic_refresh_every"] * per_refresh
        return self.synthetic_before + session

    def save_checkpoint(self) -> None:
        self.state["synthetic_volumes_generated"] = self._synthetic_total()
        ckpt = {"fcn": self.fcn.state_dict(), "attention_net": self.attention.state_dict(),
                "optimizer": self.optimizer.state_dict(), "state": self.state, "rng": _rng_state(self.rng),
                "config": self.cfg}
        if self.ema is not None:
            ckpt["fcn_ema"] = self.ema.state_dict()
        buffer = io.BytesIO()  # serialized first, so that a full disk is an OSError that names itself
        torch.save(ckpt, buffer)
        temporary = self.ckpt_path.with_suffix(".tmp")
        try:
            temporary.write_bytes(buffer.getvalue())
            temporary.replace(self.ckpt_path)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            kept = (f"{self.ckpt_path} keeps the previous checkpoint: --resume continues from it"
                    if self.ckpt_path.is_file() else "no checkpoint was kept")
            raise OutputWriteError(f"{describe_write_error(exc, temporary)}; {kept}") from exc

    def train_attention(self) -> None:
        """The attention network (seed 001, section 2.1) on the real volumes and fresh synthetic ones."""
        ac, prep, data = self.ac, self.prep, self.data
        synthetic = ac["synthetic_volumes"] if data.masks or data.anatomy_maps else 0
        vols = data.real + [data.synthesize(self.rng) for _ in range(synthetic)]
        examples = []
        for v in vols:
            examples += sagittal_examples(v.image, v.labels, prep.spacing_mm, prep.localization_spacing_mm,
                                          self.localization.slice_step, self.att_cfg.block, self.pad)
        self.progress(f"attention net: {len(examples)} sagittal slices from {len(vols)} volumes")
        self.state["attention"] = train_attention(self.attention, examples, self.rng, self.dev, ac["max_iterations"],
                                                  60.0 * ac["max_wall_minutes"], ac["learning_rate"],
                                                  ac["slices_per_batch"], self.pad, self.progress)
        self.state["attention"]["volumes"] = len(vols)
        self.save_checkpoint()

    def _sampler(self, augment: bool) -> PatchSampler:
        tc, prep = self.tc, self.prep
        return PatchSampler(self.fcn_cfg.patch_size, self.pad, self.traversal.direction,
                            tc["sigma_mm"] / prep.spacing_mm, tc["gamma"], tc["random_patch_fraction"],
                            tc["completeness_tolerance"], augment, prep.hu_scale, tc["pose_probability"],
                            tc["max_rotation_degrees"], tc["max_scale"], tc["memory_error_probability"],
                            tc["fov_crop_probability"], prep.spacing_mm,
                            cut_body_values(prep))

    def train_fcn(self) -> None:
        """The iterative FCN (seed 002, section 3.6) until ``max_iterations`` or the wall-clock budget."""
        tc, dc, state = self.tc, self.dc, self.state
        sampler = self._sampler(tc["augment"])
        val_rng = np.random.default_rng(12345)
        val_patches = [self._sampler(False).sample(v, val_rng) for v in self.data.validation for _ in range(8)]
        log_path = self.out / "loss_log.csv"
        if not log_path.exists():
            with open(log_path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerow(LOG_FIELDS)
        n_max, wall = int(tc["max_iterations"]), 60.0 * float(tc["max_wall_minutes"])
        stream = None
        if self.workers:
            stream = patch_batches(self.data, sampler, tc["batch_size"], dc["synthetic_refresh_every"],
                                   dc["synthetic_refresh_count"], (int(self.cfg["seed"]), state["iteration"]),
                                   self.workers)
            self.progress(f"fcn: patches drawn by {self.workers} worker processes")
        self.fcn.train()
        running: list[list[float]] = []
        session_start, base_seconds = time.monotonic(), state["fcn_seconds"]
        while not _limits_reached(state, tc):
            n = state["iteration"]
            progress_n = max(n, n_max * state["fcn_seconds"] / wall) if tc.get("lambda_progress", "max") == "max" else n
            lam = lambda_schedule(progress_n, n_max, tc["lambda_min"])
            patches = (next(stream) if stream is not None
                       else [sampler.sample(self.data.draw(self.rng), self.rng) for _ in range(tc["batch_size"])])
            terms = fcn_step(self.fcn, batch_tensors(patches, self.dev), lam, tc["segmentation_unit_voxels"], self.dev)
            self.optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.fcn)
            running.append([v.item() for v in terms])
            state["iteration"] = n + 1
            state["fcn_seconds"] = base_seconds + time.monotonic() - session_start
            if stream is None and self.data.pool and state["iteration"] % dc["synthetic_refresh_every"] == 0:
                self.data.refresh(self.rng, dc["synthetic_refresh_count"])
            checkpoint_now = state["iteration"] % tc["checkpoint_every"] == 0
            if state["iteration"] % tc["log_every"] == 0 or checkpoint_now:
                val = (_validation_loss(self.fcn, val_patches, lam, tc["segmentation_unit_voxels"], self.dev)
                       if checkpoint_now else None)
                self._log(log_path, np.mean(running, axis=0), lam, val, n_max, wall)
                running = []
            if checkpoint_now:
                self.save_checkpoint()
                plot_losses(log_path, self.out / "loss_curve.png")
        del stream  # ends the worker processes
        self.save_checkpoint()
        plot_losses(log_path, self.out / "loss_curve.png")

    def _log(self, log_path: Path, mean: np.ndarray, lam: float, val: float | None, n_max: int, wall: float) -> None:
        state = self.state
        self.last_losses = dict(zip(["total", "fp", "fn", "label", "completeness"], mean.tolist()))
        with open(log_path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow([state["iteration"], f"{state['fcn_seconds']:.1f}", f"{lam:.4f}",
                                    *[f"{v:.5f}" for v in mean], "" if val is None else f"{val:.5f}"])
        rate = state["fcn_seconds"] / max(state["iteration"], 1)
        self.progress(f"fcn: iteration {state['iteration']}/{n_max}, {state['fcn_seconds'] / 60:.1f}/{wall / 60:.0f} "
                      f"min, {rate:.2f} s/it, lambda {lam:.3f}, loss {mean[0]:.3f} (fp {mean[1]:.3f} fn {mean[2]:.3f} "
                      f"label {mean[3]:.3f} compl {mean[4]:.3f})" + ("" if val is None else f", validation {val:.3f}"))

    def write_model(self) -> Path:
        """The model folder with its training provenance and model card."""
        cfg, tc, state, dev = self.cfg, self.tc, self.state, self.dev
        data = self.data.summary()
        data["real_training_cases"] = list(state["real_training_cases"])  # every session's, a resumed run's too
        if not state["real_training_cases_complete"]:
            data["real_training_cases_complete"] = False
        data["synthetic_volumes_generated"] = self._synthetic_total()  # every session's, a resumed run's too
        if not state["synthetic_volumes_generated_complete"]:
            data["synthetic_volumes_generated_complete"] = False
        if state.get("synthetic_volumes_counted"):  # this session's patch workers, or an earlier session's
            data["synthetic_volumes_counted"] = state["synthetic_volumes_counted"]
        training = {
            "data": data,
            "fcn_iterations": state["iteration"],
            "fcn_max_iterations": int(tc["max_iterations"]),
            "fcn_wall_seconds": round(state["fcn_seconds"], 1),
            "attention": state["attention"],
            "warm_start": state.get("warm_start"),
            "seen_in_training": state["seen_in_training"],
            "seen_in_training_complete": state["seen_in_training_complete"],
            "held_out": state["held_out"],
            "final_losses": self.last_losses,
            "weights": ("last iterate" if self.ema is None else
                        f"exponential moving average over the iterations, decay {tc['ema_decay']}"),
            "seed": cfg["seed"],
            "hardware": {"device": str(dev), "cpu": platform.processor() or platform.machine(),
                         "threads": torch.get_num_threads(), "patch_workers": self.workers,
                         "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None},
            "torch": torch.__version__,
            "config": cfg,
            "notes": "FP/FN soft counts in units of segmentation_unit_voxels voxels; surface-weight sigma = "
                     f"{tc['sigma_mm']} mm = {tc['sigma_mm'] / self.prep.spacing_mm:.2f} voxels",
        }
        model = SpineModel(name=cfg["name"], version=cfg["version"], modality=cfg["modality"], preprocessing=self.prep,
                           traversal=self.traversal, localization=self.localization,
                           fcn=(self.fcn if self.ema is None else self.ema.module).eval(),
                           attention=self.attention.eval(), training=training,
                           postprocessing=Postprocessing(**cfg["postprocessing"]))
        model_dir = save_model(model, self.out / cfg["name"], overwrite=self.resume)
        write_model_card(model_dir, overwrite=self.resume)
        self.progress(f"model written to {model_dir}")
        return model_dir
