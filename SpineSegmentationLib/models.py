"""Self-describing model files: save, load, validate, checksum.

A model is a folder::

    <name>/
        model.json                  format version, name, version, preprocessing, network configurations,
                                    traversal, localization and postprocessing parameters, training provenance,
                                    file names with SHA-256 checksums
        iterative_fcn.safetensors   weights of the iterative FCN (safetensors: no pickle)
        attention_net.safetensors   weights of the localization network
        MODEL_CARD.md               human-readable card (optional)

:func:`load_model` checks the format version, the checksums and that the weights match the configuration,
and raises :class:`~SpineSegmentationLib.errors.ModelFileError` with what to do otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import ModelFileError
from .networks import AttentionNet, AttentionNetConfig, IterativeFCN, IterativeFCNConfig

FORMAT_VERSION = 1
MODEL_JSON = "model.json"
FCN_FILE = "iterative_fcn.safetensors"
ATTENTION_FILE = "attention_net.safetensors"

#: The folder the training provenance's paths are stored relative to: the repository root (the library's parent
#: folder), so that ``model.json`` names no folder of the machine it was trained on (the shared data folder
#: beside the checkout becomes ``../shared/data/...``).
PROVENANCE_ROOT = Path(__file__).resolve().parent.parent

#: Where the shipped default model lives in the source tree and in the Slicer extension (beside the library).
SOURCE_MODEL_DIR = PROVENANCE_ROOT / "Resources" / "Models" / "spineseg-default"
#: The same model inside an installed wheel: package data of ``SpineSegmentationLib.default_model``, which
#: ``pyproject.toml`` maps onto ``Resources/Models/spineseg-default`` (read with ``importlib.resources``).
WHEEL_MODEL_PACKAGE = "SpineSegmentationLib.default_model"


def default_model_dir() -> Path:
    """The shipped default model folder: the source tree's (or the Slicer extension's) when it is there, else the
    copy an installed wheel carries.

    Raises:
        ModelFileError: if neither holds a ``model.json`` (a broken installation).
    """
    found = _find_default_model_dir()
    if found is not None:
        return found
    raise ModelFileError(
        f"the shipped model was found neither in {SOURCE_MODEL_DIR} nor in the installed package "
        f"{WHEEL_MODEL_PACKAGE}; reinstall SpineSegmentationLib or pass a model folder"
    )


def _find_default_model_dir() -> Path | None:
    if (SOURCE_MODEL_DIR / MODEL_JSON).is_file():
        return SOURCE_MODEL_DIR
    try:
        packaged = importlib.resources.files(WHEEL_MODEL_PACKAGE) / MODEL_JSON
    except ModuleNotFoundError:
        return None
    # a wheel installs package data as plain files, so the folder is a real directory
    return Path(str(packaged)).parent if packaged.is_file() else None


#: The shipped default model folder (see :func:`default_model_dir`; :data:`SOURCE_MODEL_DIR` when it is missing,
#: so that messages name the expected place).
DEFAULT_MODEL_DIR = _find_default_model_dir() or SOURCE_MODEL_DIR


def relative_provenance(value, root: str | Path = PROVENANCE_ROOT):
    """``value`` (a training provenance: nested dicts, lists, strings, numbers) with every absolute path replaced
    by the same path relative to ``root``, in POSIX form (``/work/shared/data/ct/x.nii.gz`` with root
    ``/work/main`` -> ``../shared/data/ct/x.nii.gz``). Other values are returned unchanged."""
    if isinstance(value, dict):
        return {key: relative_provenance(item, root) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_provenance(item, root) for item in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(os.path.relpath(value, root)).as_posix()
    return value


def _json_kind(value) -> str:
    """What a JSON value that is not an object is, for messages: "an array", "a string", ..."""
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _check_object(meta, meta_path: Path) -> None:
    """Raises ModelFileError when the parsed ``model.json`` ``meta`` is not a JSON object."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{meta_path} holds {_json_kind(meta)}, not a JSON object of model settings; the model "
                             "file is corrupt: restore or retrain it")


def read_model_json(meta_path: Path) -> dict:
    """The settings a ``model.json`` holds, read as UTF-8 (:func:`load_model`, ``training.lineage``).

    Raises:
        ModelFileError: the file is not UTF-8 text, not valid JSON or not a JSON object (names the file; restore or
            retrain the model).
    """
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ModelFileError(f"{meta_path} is not UTF-8 text ({e}); the model file is corrupt: restore or retrain "
                             "it") from e
    except json.JSONDecodeError as e:
        raise ModelFileError(f"{meta_path} is not valid JSON ({e}); the model file is corrupt: restore or retrain "
                             "it") from e
    _check_object(meta, meta_path)
    return meta


def relativize_model_json(model_dir: str | Path, root: str | Path = PROVENANCE_ROOT) -> Path:
    """Rewrite the ``training`` provenance of an existing model folder's ``model.json`` with paths relative to
    ``root`` (see :func:`relative_provenance`); the weights and their checksums are not touched.

    Returns:
        The path of the rewritten ``model.json``.

    Raises:
        ModelFileError: if ``model_dir`` holds no readable ``model.json``, or one that is not a JSON object.
    """
    path = Path(model_dir) / MODEL_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ModelFileError(f"cannot read {path}: {error}; pass a model folder") from error
    _check_object(meta, path)
    meta["training"] = relative_provenance(meta.get("training", {}), root)
    meta["training_paths_relative_to"] = "repository root"
    path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Preprocessing:
    """How an image is prepared for the networks.

    Attributes:
        spacing_mm: isotropic voxel spacing of the canonical grid (paper: 1 mm, seed 002 section 3.1).
        hu_window: (low, high) HU; intensities are clipped to it.
        hu_scale: normalized = (clip(HU) - hu_offset) / hu_scale.
        hu_offset: see ``hu_scale``.
        localization_spacing_mm: in-plane spacing of the sagittal slices given to the attention network.
    """

    spacing_mm: float = 1.0
    hu_window: tuple[float, float] = (-1000.0, 3000.0)
    hu_offset: float = 0.0
    hu_scale: float = 1000.0
    localization_spacing_mm: float = 4.0

    def __post_init__(self) -> None:
        _check_range("preprocessing", self, {"spacing_mm": ("(", 0, None), "hu_scale": ("(", 0, None),
                                              "localization_spacing_mm": ("(", 0, None)})
        if len(self.hu_window) != 2 or not self.hu_window[0] < self.hu_window[1]:
            raise ValueError(f"preprocessing.hu_window must be (low, high) HU with low < high, got {self.hu_window!r}")


@dataclass(frozen=True)
class TraversalParameters:
    """Parameters of the iterative traversal (seed 002, section 3.3).

    Attributes:
        direction: "up" (bottom-up; the default here, the paper describes both and names none) or "down"; a
            network is trained for one direction ("both" = trained for either, by flipping the volume along the
            superior-inferior axis).
        v_min_mm3: minimal fragment volume that counts as a detection. Paper: 1000 voxels at 1 mm = 1000 mm^3.
        delta_max_voxels: convergence threshold on every axis, in voxels of the canonical grid. Paper: 2.
        max_iterations: iteration limit per vertebra, then the midpoint rule. Paper: 10.
        step_fraction: sliding-window step as a fraction of the patch size. Paper: 1/2.
        mask_threshold: probability threshold of the segmentation output.
        test_time_mirror: average the FCN's outputs on each patch and on its left-right mirror image
            (test-time augmentation, as nnU-Net does along its training mirror axes; not in the paper). For a
            network trained with random left-right mirroring (``training.augmentation.random_pose``). Off by
            default, as in the paper; the shipped model turns it on (its MODEL_CARD.md has the figures).
    """

    direction: str = "up"
    v_min_mm3: float = 1000.0
    delta_max_voxels: int = 2
    max_iterations: int = 10
    step_fraction: float = 0.5
    mask_threshold: float = 0.5
    test_time_mirror: bool = False

    def __post_init__(self) -> None:
        if self.direction not in ("up", "down", "both"):
            raise ValueError(f"traversal.direction must be 'up', 'down' or 'both', got {self.direction!r}")
        if not isinstance(self.test_time_mirror, bool):
            raise ValueError(f"traversal.test_time_mirror must be true or false, got {self.test_time_mirror!r}")
        _check_range("traversal", self, {"v_min_mm3": ("[", 0, None), "delta_max_voxels": ("[int", 0, None),
                                         "max_iterations": ("[int", 1, None), "step_fraction": ("(", 0, 1),
                                         "mask_threshold": ("(", 0, 1)})


@dataclass(frozen=True)
class LocalizationParameters:
    """Parameters of the spine localization (seed 001, section 2.1).

    Attributes:
        slice_step: evaluate every n-th sagittal slice of the grid at ``Preprocessing.localization_spacing_mm``
            (paper: n = 8, at a slice spacing it does not state).
        sigma_mm: standard deviation of the 3D Gaussian smoothing of the up-sampled map, in mm.
        threshold: threshold on the smoothed fraction map (paper: tuned on validation data).
        margin_mm: dilation of the thresholded mask before it is used to accept detections.
        column_half_width_mm: the mask is cut to this distance left and right of the spine's centre line
            (ours: half the width of a lumbar vertebra across its transverse processes, about 50 mm), so that
            the iliac wings, ribs or shoulders that the attention network confuses with the spine are not searched.
        column_max_width_mm: slices whose mask is at most this wide (left-right) define the centre line (ours:
            the widest vertebra, 100 mm, plus twice the margin, plus 20 mm); wider slices take the centre of the
            nearest narrow ones, and where no slice is narrow the spine's most probable path defines the line
            (``localization.spine_column``).
    """

    slice_step: int = 2
    sigma_mm: float = 8.0
    threshold: float = 0.05
    margin_mm: float = 20.0
    column_half_width_mm: float = 50.0
    column_max_width_mm: float = 160.0

    def __post_init__(self) -> None:
        _check_range("localization", self, {"slice_step": ("[int", 1, None), "sigma_mm": ("[", 0, None),
                                            "threshold": ("[", 0, 1), "margin_mm": ("[", 0, None),
                                            "column_half_width_mm": ("(", 0, None),
                                            "column_max_width_mm": ("(", 0, None)})


def _check_range(section: str, parameters, ranges: dict) -> None:
    """Raise ValueError naming ``section.name`` unless each value lies in its range. ``ranges``: name -> (kind, low,
    high): kind "[" (low <= value) or "(" (low < value), "int" appended for an integer; high (inclusive) or None."""
    for name, (kind, low, high) in ranges.items():
        value = getattr(parameters, name)
        number = numbers.Integral if kind.endswith("int") else numbers.Real
        above = isinstance(value, number) and (low <= value if kind[0] == "[" else low < value)
        if isinstance(value, bool) or not above or (high is not None and value > high):
            bounds = (">= " if kind[0] == "[" else "> ") + str(low) + (f" and <= {high}" if high is not None else "")
            raise ValueError(f"{section}.{name} must be {'an integer' if number is numbers.Integral else 'a number'} "
                             f"{bounds}, got {value!r}")


@dataclass(frozen=True)
class Postprocessing:
    """What is done to the traversal's masks on the input grid.

    Attributes:
        surface_refinement: remove surface voxels below 200 HU from every vertebra (seed 002, section 3.1; on by
            default, as in the paper). Whether it helps depends on the model's masks: a model whose masks already
            follow the bone at the references' resolution loses true surface voxels to it (the shipped model turns it
            off, see its MODEL_CARD.md).
    """

    surface_refinement: bool = True


@dataclass
class SpineModel:
    """A loaded model: networks (in eval mode) plus everything needed to use them."""

    name: str
    version: str
    modality: str
    preprocessing: Preprocessing
    traversal: TraversalParameters
    localization: LocalizationParameters
    fcn: IterativeFCN
    attention: AttentionNet
    training: dict = field(default_factory=dict)
    path: Path | None = None
    postprocessing: Postprocessing = field(default_factory=Postprocessing)

    @property
    def description(self) -> str:
        c = self.fcn.config
        return (
            f"{self.name} {self.version}: patch {c.patch_size}^3 at {self.preprocessing.spacing_mm} mm, "
            f"{c.filters} filters, traversal {self.traversal.direction}"
        )

    @property
    def patch_mm(self) -> float:
        """The FCN's patch edge in mm (patch size x the canonical grid's spacing)."""
        return self.fcn.config.patch_size * self.preprocessing.spacing_mm

    def to(self, device: torch.device | str) -> "SpineModel":
        self.fcn.to(device)
        self.attention.to(device)
        return self


def file_sha256(path: Path) -> str:
    """SHA-256 of the bytes of the file at ``path`` (hex), read 1 MiB at a time. OSError: unreadable."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_model(model: SpineModel, directory: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` as a model folder.

    Raises:
        ModelFileError: if ``directory`` already holds a model and ``overwrite`` is False.
    """
    directory = Path(directory)
    if (directory / MODEL_JSON).exists() and not overwrite:
        raise ModelFileError(f"{directory} already holds a model; choose another folder or pass overwrite=True")
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.fcn.state_dict().items()}, str(directory / FCN_FILE))
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.attention.state_dict().items()},
        str(directory / ATTENTION_FILE),
    )
    meta = {
        "format_version": FORMAT_VERSION,
        "name": model.name,
        "version": model.version,
        "modality": model.modality,
        "preprocessing": asdict(model.preprocessing),
        "traversal": asdict(model.traversal),
        "localization": asdict(model.localization),
        "postprocessing": asdict(model.postprocessing),
        "iterative_fcn": model.fcn.config.to_dict(),
        "attention_net": model.attention.config.to_dict(),
        "training": relative_provenance(model.training),
        "training_paths_relative_to": "repository root",
        "files": {
            "iterative_fcn": {"path": FCN_FILE, "sha256": file_sha256(directory / FCN_FILE)},
            "attention_net": {"path": ATTENTION_FILE, "sha256": file_sha256(directory / ATTENTION_FILE)},
        },
    }
    (directory / MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return directory


def _first_lines(text: str, lines: int = 3, width: int = 160) -> str:
    """The first ``lines`` lines of a long message (torch lists every parameter of a mismatch), each cut to
    ``width`` characters, and how many more there were."""
    parts = [line.strip() for line in text.splitlines() if line.strip()]
    shown = [line if len(line) <= width else line[: width - 3] + "..." for line in parts[:lines]]
    return " / ".join(shown) + (f" (and {len(parts) - lines} more lines)" if len(parts) > lines else "")


def _dataclass_from(cls, d: dict, what: str):
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ModelFileError(f"model.json: unknown {what} keys {sorted(unknown)}; is the library older than the model?")
    if "hu_window" in d:
        d = {**d, "hu_window": tuple(d["hu_window"])}
    try:
        return cls(**d)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"model.json: invalid {what}: {error}; restore the model folder or retrain it") from None


def load_model(path: str | Path | None = None, device: torch.device | str = "cpu") -> SpineModel:
    """Load and validate a model folder (default: the shipped model).

    Args:
        path: model folder, or its ``model.json``; None = :data:`DEFAULT_MODEL_DIR`.
        device: torch device the networks are moved to.

    Raises:
        ModelFileError: missing folder or file, a ``model.json`` that is not UTF-8 text, not valid JSON or not a
            JSON object (or whose ``files`` and their entries are not), unsupported format version, checksum
            mismatch (corrupt or modified weights), or weights that do not fit the configuration.
    """
    directory = Path(path) if path is not None else default_model_dir()
    if directory.name == MODEL_JSON:
        directory = directory.parent
    meta_path = directory / MODEL_JSON
    if not meta_path.is_file():
        raise ModelFileError(
            f"no model at {directory} (expected {MODEL_JSON} there). Pass --model with a model folder written by "
            "`spineseg train`, or reinstall the extension to restore the shipped model in Resources/Models."
        )
    meta = read_model_json(meta_path)
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{meta_path} has model format version {version!r}; this library reads version {FORMAT_VERSION}. "
            "Use the library version that wrote the model, or retrain it with this one."
        )
    for key in ("name", "version", "modality", "preprocessing", "traversal", "localization",
                "iterative_fcn", "attention_net", "files"):
        if key not in meta:
            raise ModelFileError(f"{meta_path} lacks the required key {key!r}; the model file is incomplete")
    try:
        fcn = IterativeFCN(IterativeFCNConfig.from_dict(meta["iterative_fcn"]))
        attention = AttentionNet(AttentionNetConfig.from_dict(meta["attention_net"]))
    except ValueError as e:
        raise ModelFileError(f"{meta_path}: invalid network configuration: {e}") from e
    if not isinstance(meta["files"], dict):
        raise ModelFileError(f"{meta_path}: 'files' holds {_json_kind(meta['files'])}, not a JSON object of weight "
                             "files; the model file is corrupt: restore or retrain it")
    for key, net in (("iterative_fcn", fcn), ("attention_net", attention)):
        entry = meta["files"].get(key)
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("path", "sha256")):
            raise ModelFileError(f"{meta_path}: files.{key} must be an object giving 'path' and 'sha256' as strings; "
                                 "the model file is corrupt: restore or retrain it")
        weights = directory / entry["path"]
        if not weights.is_file():
            raise ModelFileError(f"model weights {weights} are missing; restore the model folder or retrain it")
        digest = file_sha256(weights)
        if digest != entry["sha256"]:
            raise ModelFileError(
                f"checksum mismatch for {weights}: expected {entry['sha256'][:12]}..., found {digest[:12]}...; "
                "the file is corrupt or was modified: restore it from the release or retrain"
            )
        try:
            state = load_file(str(weights))
        except SafetensorError as e:  # a corrupt file whose checksum in model.json was updated with it
            raise ModelFileError(
                f"{weights} is not a readable safetensors file ({e}) although its checksum matches model.json: the "
                "file and the checksum were changed together; restore the model folder from the release or retrain"
            ) from e
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise ModelFileError(f"{weights} does not match the configuration in {MODEL_JSON}: "
                                 f"{_first_lines(str(e))}; restore the model folder or retrain it") from e
        net.eval()
    model = SpineModel(
        name=meta["name"],
        version=meta["version"],
        modality=meta["modality"],
        preprocessing=_dataclass_from(Preprocessing, meta["preprocessing"], "preprocessing"),
        traversal=_dataclass_from(TraversalParameters, meta["traversal"], "traversal"),
        localization=_dataclass_from(LocalizationParameters, meta["localization"], "localization"),
        fcn=fcn,
        attention=attention,
        training=meta.get("training", {}),
        path=directory,
        postprocessing=_dataclass_from(Postprocessing, meta.get("postprocessing", {}), "postprocessing"),
    )
    return model.to(device)
