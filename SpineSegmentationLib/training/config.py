"""Training configuration: one JSON file describes the data, the model and the schedule of a training run.

The file has these sections (every key has a default, see :data:`DEFAULTS`; unknown keys are rejected so a
typo cannot silently fall back to a default):

- ``name``, ``version``, ``modality``: of the model folder written at the end.
- ``preprocessing``: :class:`~SpineSegmentationLib.models.Preprocessing` fields.
- ``iterative_fcn`` / ``attention_net``: network configurations.
- ``traversal`` / ``localization`` / ``postprocessing``: :class:`~SpineSegmentationLib.models.TraversalParameters`,
  :class:`~SpineSegmentationLib.models.LocalizationParameters` and
  :class:`~SpineSegmentationLib.models.Postprocessing` fields stored with the model.
- ``data``: ``verse_root`` (a VerSe-layout folder or a list of them), ``manifest`` (CSV, see
  :mod:`.readers`), ``synthetic_masks_root`` (VerSe-layout folders whose masks feed the synthetic CT
  generator, except those in folders named as validation or test data, which are listed and not used),
  ``anatomy_maps`` (whole-anatomy label maps in TotalSegmentator v2 numbering, painted into CTs by
  :mod:`.anatomy_synthesis`) with ``anatomy_synthesis_share`` (their share of the synthetic volumes when
  VerSe masks are also given), ``composite_column_share`` (the share of the mask-based ones built on two masks
  stacked into one column, the thoracic levels between them filled: :mod:`.column_synthesis`),
  ``synthetic_fraction`` (share of patches from synthetic volumes), ``pseudo_label_ignore_mm`` (on the CTs labelled
  by a model, the manifest's ``teacher`` column: the band on either side of each vertebra's surface that the loss
  ignores, in mm; 0 = none), pool size
  and refresh rate; ``held_out``: scans (images or label maps) the run must never see, neither in its own data
  nor through the model it starts from (checked by :mod:`.lineage` before training starts); a validation CT among
  them is left out of the validation loss (logged).
  Relative paths are relative to the configuration file.
- ``fcn_training`` / ``attention_training``: iterations, wall-clock budget, optimizer and loss settings,
  augmentation (``pose_probability``, ``max_rotation_degrees``, ``max_scale``: see
  :func:`~.augmentation.random_pose`; ``memory_error_probability``: :func:`~.augmentation.perturb_memory`;
  ``fov_crop_probability``: the share of patches from a scan cut to an in-plane field of view around the spine,
  extended as in inference: :func:`~.sampler.crop_field_of_view`);
  ``init_from``: an earlier run's ``checkpoint.pt`` or a model folder to start from;
  ``attention_training.retrain`` (with ``init_from``): train the attention net again instead of copying it;
  ``ema_decay``: when > 0, the model folder gets the exponential moving average of the FCN's weights over the
  iterations (``torch.optim.swa_utils``; each step ``avg = decay * avg + (1 - decay) * weights``) instead of the
  last iterate, which stays in ``checkpoint.pt`` (not in the paper; 0 = off).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
from pathlib import Path

from ..errors import SpineSegmentationError
from ..text_files import JSON_ADVICE, read_utf8_text

DEFAULTS: dict = {
    "name": "spineseg-default",
    "version": "0.1.0",
    "modality": "CT",
    "seed": 0,
    "preprocessing": {
        "spacing_mm": 2.5,
        "hu_window": [-1000.0, 3000.0],
        "hu_offset": 0.0,
        "hu_scale": 1000.0,
        "localization_spacing_mm": 4.0,
    },
    "iterative_fcn": {"patch_size": 48, "filters": 16, "levels": 4, "recognition_filters": 16, "recognition_levels": 2,
                      "normalization": "batch"},
    "attention_net": {"filters": 16, "pool_levels": 4},
    "traversal": {"direction": "up", "test_time_mirror": False},
    "localization": {},
    "postprocessing": {"surface_refinement": True},
    "data": {
        "verse_root": None,
        "manifest": None,
        "synthetic_masks_root": None,
        "anatomy_maps": [],
        "anatomy_synthesis_share": 0.5,
        "composite_column_share": 0.0,
        "pseudo_label_ignore_mm": 0.0,
        "held_out": [],
        "synthetic_fraction": 0.5,
        "synthetic_pool_size": 8,
        "synthetic_refresh_every": 100,
        "synthetic_refresh_count": 1,
    },
    "fcn_training": {
        "max_iterations": 10000,
        "max_wall_minutes": 75.0,
        "batch_size": 1,
        "learning_rate": 1e-3,
        "betas": [0.99, 0.999],
        "lambda_min": 0.1,
        "gamma": 8.0,
        "sigma_mm": 6.0,
        "segmentation_unit_voxels": 1000.0,
        "lambda_progress": "max",
        "random_patch_fraction": 0.25,
        "completeness_tolerance": 0.02,
        "augment": True,
        "pose_probability": 0.7,
        "max_rotation_degrees": 20.0,
        "max_scale": 0.1,
        "memory_error_probability": 0.0,
        "fov_crop_probability": 0.0,
        "checkpoint_every": 250,
        "log_every": 10,
        "init_from": None,
        "ema_decay": 0.0,
    },
    "attention_training": {
        "max_iterations": 1500,
        "max_wall_minutes": 5.0,
        "learning_rate": 1e-3,
        "slices_per_batch": 8,
        "synthetic_volumes": 12,
        "retrain": False,
    },
}

def _merge(base: dict, override: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key.startswith("_"):  # "_comment" keys document a configuration file
            continue
        if key not in base:
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f"did you mean '{where}{close[0]}'? " if close else ""
            raise SpineSegmentationError(f"unknown training configuration key '{where}{key}'; {hint}valid keys: "
                                         f"{sorted(base)}")
        if isinstance(base[key], dict) and not isinstance(value, dict):
            raise SpineSegmentationError(
                f"{where}{key} must be a JSON object of settings ({{\"key\": value, ...}}), got {value!r:.80}; see "
                "Resources/TrainingConfigs/default_cpu.json")
        if isinstance(base[key], dict) and base[key]:
            out[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


#: The path settings: (section, key) -> what they may hold ("one": a path or null; "list": a path or a list of paths,
#: read as a list; "one or list": either, kept as given).
PATH_SETTINGS = {("data", "manifest"): "one", ("data", "verse_root"): "one or list",
                 ("data", "synthetic_masks_root"): "one or list", ("data", "anatomy_maps"): "list",
                 ("data", "held_out"): "list", ("fcn_training", "init_from"): "one"}


def _resolve(value, base_dir: Path, name: str, kind: str):
    """A path setting made absolute (relative to ``base_dir``), after checking that it holds what ``kind`` allows
    (:data:`PATH_SETTINGS`): a text where a path is read, not a number, a list of texts where several are."""
    if value is None:
        return [] if kind == "list" else None
    if isinstance(value, str) and value.strip():
        path = str((base_dir / value).resolve())
        return [path] if kind == "list" else path
    several = kind != "one"
    if several and isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
        return [str((base_dir / v).resolve()) for v in value]
    wanted = "a path (a text)" + (" or a list of paths" if several else "") + (" or null" if kind == "one" else "")
    raise SpineSegmentationError(f"{name} must be {wanted}, got {value!r:.80}; paths are relative to the "
                                 "configuration file")


def load_config(config: str | Path | dict) -> dict:
    """Read a training configuration and fill in defaults.

    Args:
        config: path of a JSON file, or a dict with the same structure (relative data paths in a dict are
            relative to the current directory).

    Returns:
        The complete configuration dict; data paths are absolute.

    Raises:
        FileNotFoundError: the file does not exist.
        SpineSegmentationError (a ValueError): not UTF-8 text, invalid JSON, unknown keys, no training data
            configured, a setting of the wrong kind (a text for a number, "false" for a flag, a number for a path, a
            text for a section) or out of its range, or a ``name`` that is no folder name, named with the fix.
    """
    if isinstance(config, dict):
        raw, base_dir = config, Path.cwd()
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"training configuration {path} not found; see Resources/TrainingConfigs/*.json")
        try:
            raw = json.loads(read_utf8_text(path, "training configuration", JSON_ADVICE))
        except json.JSONDecodeError as e:
            raise SpineSegmentationError(f"{path} is not valid JSON: {e}") from e
        base_dir = path.resolve().parent
    if not isinstance(raw, dict):
        raise SpineSegmentationError(f"the training configuration must be a JSON object ({{\"data\": ..., ...}}), got "
                                     f"{raw!r:.80}; see Resources/TrainingConfigs/default_cpu.json")
    cfg = _merge(DEFAULTS, raw, "")
    for (section, key), kind in PATH_SETTINGS.items():
        cfg[section][key] = _resolve(cfg[section][key], base_dir, f"{section}.{key}", kind)
    _check_types(DEFAULTS, cfg, "")
    _check_name(cfg["name"])
    data = cfg["data"]
    if not (data["verse_root"] or data["manifest"] or data["synthetic_masks_root"] or data["anatomy_maps"]):
        raise SpineSegmentationError(
            "the training configuration names no data: set data.verse_root (VerSe-layout folder), data.manifest "
            "(CSV with image,labels,convention columns) and/or data.synthetic_masks_root"
        )
    if cfg["traversal"].get("direction", "up") not in ("up", "down"):
        raise SpineSegmentationError(
            f"traversal.direction must be 'up' or 'down', got {cfg['traversal'].get('direction')!r}")
    if cfg["fcn_training"]["lambda_progress"] not in ("max", "iterations"):
        raise SpineSegmentationError(
            "fcn_training.lambda_progress must be 'max' (iterations or wall clock) or 'iterations'")
    for key in ("synthetic_fraction", "anatomy_synthesis_share", "composite_column_share"):
        if not 0.0 <= data[key] <= 1.0:
            raise SpineSegmentationError(f"data.{key} must be in [0, 1], got {data[key]}")
    if data["pseudo_label_ignore_mm"] < 0:
        raise SpineSegmentationError(f"data.pseudo_label_ignore_mm must be >= 0 (mm; 0 = no band), got "
                         f"{data['pseudo_label_ignore_mm']}")
    for key in ("pose_probability", "memory_error_probability", "fov_crop_probability", "random_patch_fraction",
                "completeness_tolerance", "lambda_min"):
        if not 0.0 <= cfg["fcn_training"][key] <= 1.0:
            raise SpineSegmentationError(f"fcn_training.{key} must be in [0, 1], got {cfg['fcn_training'][key]}")
    if not all(0.0 <= beta < 1.0 for beta in cfg["fcn_training"]["betas"]):
        raise SpineSegmentationError(f"fcn_training.betas must be two numbers in [0, 1) (Adam's decay rates, the "
                                     f"paper's 0.99 and 0.999), got {cfg['fcn_training']['betas']}")
    if not 0.0 <= cfg["fcn_training"]["max_scale"] < 1.0:
        raise SpineSegmentationError(f"fcn_training.max_scale must be in [0, 1) (the scale is drawn from [1 - "
                                     f"max_scale, 1 + max_scale]), got {cfg['fcn_training']['max_scale']}")
    for dotted in NON_NEGATIVE_KEYS:
        section, key = dotted.split(".")
        if cfg[section][key] < 0:
            raise SpineSegmentationError(f"{dotted} must be >= 0, got {cfg[section][key]!r}")
    check_seed(cfg["seed"])
    if not 0.0 <= cfg["fcn_training"]["ema_decay"] < 1.0:
        raise SpineSegmentationError(f"fcn_training.ema_decay must be in [0, 1) (0 = keep the last iterate), got "
                         f"{cfg['fcn_training']['ema_decay']}")
    for dotted in POSITIVE_KEYS:
        section, key = dotted.split(".")
        if not cfg[section][key] > 0:
            raise SpineSegmentationError(f"{dotted} must be > 0, got {cfg[section][key]!r}")
    budget = cfg["fcn_training"]
    for key in ("max_iterations", "max_wall_minutes"):
        if budget[key] < 0 or (budget[key] == 0 and not budget["init_from"]):
            raise SpineSegmentationError(
                f"fcn_training.{key} must be > 0, got {budget[key]!r}: the run would write an untrained model (0 is "
                "allowed with fcn_training.init_from, to write that model again without training)")
    model_sections(cfg)  # a bad value in them is named now, before any data is read
    return cfg


#: Settings that must be positive numbers (a learning rate, a spacing, a budget, a count of things per step).
#: (``preprocessing``'s are checked by :class:`~SpineSegmentationLib.models.Preprocessing` itself.)
POSITIVE_KEYS = (
    "fcn_training.batch_size",
    "fcn_training.learning_rate", "fcn_training.sigma_mm", "fcn_training.segmentation_unit_voxels",
    "fcn_training.checkpoint_every", "fcn_training.log_every", "attention_training.max_iterations",
    "attention_training.max_wall_minutes", "attention_training.learning_rate", "attention_training.slices_per_batch",
    "data.synthetic_pool_size", "data.synthetic_refresh_every",
    "iterative_fcn.patch_size", "iterative_fcn.filters", "iterative_fcn.recognition_filters", "attention_net.filters",
)


#: Settings that must not be negative (0 is meaningful: none, off).
NON_NEGATIVE_KEYS = (
    "fcn_training.gamma", "fcn_training.max_rotation_degrees", "attention_training.synthetic_volumes",
    "data.synthetic_refresh_count",
    "iterative_fcn.recognition_levels", "attention_net.pool_levels",  # 0: no extra pooling step (block of 1 pixel)
)


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` if it is a whole number that numpy's and torch's generators take (0 to 2**63 - 1).

    Raises:
        SpineSegmentationError: another value, with ``name`` (the setting or option that gave it).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 63:
        raise SpineSegmentationError(f"{name} must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    return seed


def _check_name(name: str) -> None:
    """The model's name is also the name of the model folder written inside the run folder: one folder name, so that
    the model lands there and nowhere else (not "", ".", ".." or a path, which would put it into the run folder itself,
    above it, or into another folder, e.g. a model folder it would overwrite when a resumed run writes again)."""
    if not name.strip() or name in (".", "..") or "/" in name or "\\" in name:
        raise SpineSegmentationError(
            f"name must be a folder name (the model folder is written as <run folder>/<name>), got {name!r}: give a "
            "name without '/' or '\\', not empty, '.' or '..', e.g. \"my-spine-model\"")


def _check_types(base: dict, cfg: dict, where: str) -> None:
    """Every setting whose default is a number, a flag, a text or a list of numbers holds one of the same kind (an
    integer where the default is one): "false" for a flag or "1e-3" for a rate would otherwise be taken as given."""
    for key, default in base.items():
        value, name = cfg[key], f"{where}{key}"
        if isinstance(default, dict):
            if default:
                _check_types(default, value, f"{name}.")
            continue
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok, kind = number and math.isfinite(value), "a finite number" if number else "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a text"
        elif isinstance(default, list) and default and all(isinstance(v, float) for v in default):
            ok = isinstance(value, list) and len(value) == len(default) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            kind = f"a list of {len(default)} numbers (finite)"
        else:
            continue  # paths and lists of paths (None by default): checked where they are read
        if not ok:
            raise SpineSegmentationError(f"{name} must be {kind}, got {value!r}")


def model_sections(cfg: dict) -> dict:
    """The sections of a configuration that become the model's: ``{"preprocessing": Preprocessing, "traversal":
    TraversalParameters, "localization": LocalizationParameters, "iterative_fcn": IterativeFCNConfig,
    "attention_net": AttentionNetConfig}``.

    Raises:
        SpineSegmentationError: a bad value in one of them (a patch size the network cannot halve, an unknown key of
            ``localization``), with the section's name.
    """
    from ..models import LocalizationParameters, Preprocessing, TraversalParameters
    from ..networks import AttentionNetConfig, IterativeFCNConfig

    builders = {
        "preprocessing": lambda d: Preprocessing(**dict(d, hu_window=tuple(d["hu_window"]))),
        "traversal": lambda d: TraversalParameters(**d),
        "localization": lambda d: LocalizationParameters(**d),
        "iterative_fcn": IterativeFCNConfig.from_dict,
        "attention_net": AttentionNetConfig.from_dict,
    }
    sections = {}
    for section, build in builders.items():
        try:
            sections[section] = build(cfg[section])
        except (TypeError, ValueError) as error:
            raise SpineSegmentationError(f"training configuration section {section!r}: {error}") from error
    return sections
