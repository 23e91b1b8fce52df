"""Training data assembly: real CT volumes plus a refreshed pool of synthetic CT volumes.

Real cases come from the configuration's ``data.manifest`` and ``data.verse_root`` (train split only;
validation cases are kept apart for a held-out loss). Mask-only cases (train-split VerSe masks without CT, and
the masks under ``data.synthetic_masks_root``) feed :func:`~.synthetic.synthesize_ct`; a validation (or test) mask
without CT is not used at all, under ``data.synthetic_masks_root`` too (a mask in a folder named as validation or
test data, :func:`~.readers.is_validation_path`, e.g. ``dataset-verse19validation/`` when the root is a whole VerSe
download, would put validation anatomy into training). Patches are drawn from a synthetic volume with probability
``data.synthetic_fraction`` (when both kinds exist).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpineSegmentationError
from ..models import Preprocessing
from ..preprocessing import normalize_hu
from .anatomy_synthesis import synthesize_from_anatomy
from .column_synthesis import composite_column, stackable_pairs
from .readers import Case, CaseVolume, find_verse_cases, load_anatomy_map, load_case, read_manifest
from .sampler import TrainingVolume
from .synthetic import synthesize_ct


def collect_cases(data_cfg: dict) -> list[Case]:
    """All cases named by the ``data`` section (manifest, VerSe roots, synthetic mask roots). The masks of
    ``data.synthetic_masks_root`` are mask-only cases (their CTs, if any, are not read) and keep the split of their
    folder's name: a validation/test one is listed and not used (:class:`TrainingData`).

    Raises:
        FileNotFoundError: a root is not a folder or holds no mask (:func:`~.readers.find_verse_cases`).
        SpineSegmentationError: a ``data.synthetic_masks_root`` all of whose masks lie in validation/test folders,
            so that it would add nothing; or a bad manifest or VerSe folder (:mod:`.readers`).
    """
    cases: list[Case] = []
    if data_cfg.get("manifest"):
        cases += read_manifest(data_cfg["manifest"])
    for key in ("verse_root", "synthetic_masks_root"):
        roots = data_cfg.get(key) or []
        for root in [roots] if isinstance(roots, str) else roots:
            found = find_verse_cases(root)
            if key == "synthetic_masks_root":
                found = [Case(c.name, None, c.labels, c.convention, c.split, synthesis_source=True) for c in found]
                if all(c.split != "train" for c in found):
                    raise SpineSegmentationError(
                        f"data.synthetic_masks_root {root}: all its {len(found)} mask(s) lie in folders named as "
                        "validation or test data (a name with a word starting 'valid' or 'test', the root's own "
                        "included), and such masks never feed training: point data.synthetic_masks_root at the "
                        "training masks (e.g. dataset-verse19training) or rename the folder if it holds training data")
            cases += found
    return cases


def to_training_volume(volume: CaseVolume, prep: Preprocessing, ignore_band_mm: float = 0.0) -> TrainingVolume:
    """Normalize a loaded case's HU for the network and index its vertebrae; ``ignore_band_mm``: the band around
    each vertebra's surface the loss ignores (:func:`~.losses.surface_distance_weights`), in mm."""
    return TrainingVolume.build(volume.name, normalize_hu(volume.hu, prep), volume.labels,
                                ignore_band_mm / prep.spacing_mm)


class TrainingData:
    """Real training volumes, mask-only label maps, validation volumes and the synthetic pool. Only train-split
    cases are trained on, as a CT or as a synthesis source; a validation case's CT gives the validation loss, and a
    validation mask without a CT is not used (listed in :meth:`split_lines`).

    Args:
        cases: from :func:`collect_cases`.
        prep: model preprocessing (spacing, HU normalization).
        pool_size: number of synthetic volumes kept in memory.
        synthetic_fraction: probability that a patch comes from the synthetic pool.
        anatomy_maps, anatomy_synthesis_share: whole-anatomy label maps and their share of the synthetic volumes.
        composite_column_share: share of the mask-based synthetic volumes built on two masks stacked into one
            column (:mod:`.column_synthesis`).
        pseudo_label_ignore_mm: on the real CTs whose labels are pseudo-labels (a manifest ``teacher``), the
            band around each vertebra's surface, in mm on either side, that the loss ignores (0: none).

    Raises:
        ValueError: no training volume at all (neither a real CT nor a mask for synthesis).
    """

    def __init__(self, cases: list[Case], prep: Preprocessing, pool_size: int, synthetic_fraction: float,
                 rng: np.random.Generator, anatomy_maps: list[str] | None = None,
                 anatomy_synthesis_share: float = 0.5, composite_column_share: float = 0.0,
                 pseudo_label_ignore_mm: float = 0.0) -> None:
        self.prep = prep
        self.synthetic_fraction = synthetic_fraction
        self.real: list[TrainingVolume] = []
        self.validation: list[TrainingVolume] = []
        self.masks: list[tuple[str, np.ndarray]] = []
        self.real_names: list[str] = []
        self.validation_names: list[str] = []
        self.case_names: dict[str, list[str]] = {"train": [], "validation": [], "unused": [], "no_ct": [],
                                                 "unused_synthesis": []}
        for case in cases:
            if case.image is None and case.split != "train":
                self.case_names["unused_synthesis" if case.synthesis_source else "unused"].append(case.name)
                continue
            vol = load_case(case, prep.spacing_mm)
            if vol.hu is None:
                self.masks.append((case.name, vol.labels))
                if not case.synthesis_source:
                    self.case_names["no_ct"].append(case.name)
            elif case.split != "train":
                self.validation.append(to_training_volume(vol, prep))
                self.validation_names.append(str(case.image))
                self.case_names["validation"].append(case.name)
            else:
                self.case_names["train"].append(case.name)
                band = pseudo_label_ignore_mm if case.teacher is not None else 0.0
                self.real.append(to_training_volume(vol, prep, band))
                self.real_names.append(str(case.image))
        self.anatomy_maps = [(str(path), load_anatomy_map(path, prep.spacing_mm)) for path in anatomy_maps or []]
        self.anatomy_synthesis_share = anatomy_synthesis_share
        self.composite_column_share = composite_column_share
        self.stackable = stackable_pairs(self.masks)
        if not self.real and not self.masks and not self.anatomy_maps:
            raise SpineSegmentationError(
                "no training data: the configuration's cases hold neither a CT with labels nor a mask")
        self.pool: list[TrainingVolume] = []
        self.synthetic_generated = 0
        if self.masks or self.anatomy_maps:
            for _ in range(pool_size):
                self.pool.append(self.synthesize(rng))

    def synthesize(self, rng: np.random.Generator) -> TrainingVolume:
        """A new synthetic volume: from a random whole-anatomy map (with probability
        ``anatomy_synthesis_share`` when VerSe masks exist too) or around a random VerSe mask, which with
        probability ``composite_column_share`` is two masks stacked into one column
        (:func:`~.column_synthesis.composite_column`) where some pair can be."""
        use_anatomy = bool(self.anatomy_maps) and (not self.masks or rng.random() < self.anatomy_synthesis_share)
        if use_anatomy:
            name, anatomy = self.anatomy_maps[int(rng.integers(len(self.anatomy_maps)))]
            hu, lab = synthesize_from_anatomy(anatomy, rng, self.prep.spacing_mm)
            name = Path(name).name.split(".")[0]
        elif self.composite_column_share > 0 and self.stackable and rng.random() < self.composite_column_share:
            upper, lower = self.stackable[int(rng.integers(len(self.stackable)))]
            name = f"{self.masks[upper][0]}+{self.masks[lower][0]}"
            hu, lab = synthesize_ct(composite_column(self.masks[upper][1], self.masks[lower][1], rng), rng,
                                    self.prep.spacing_mm)
        else:
            name, labels = self.masks[int(rng.integers(len(self.masks)))]
            hu, lab = synthesize_ct(labels, rng, self.prep.spacing_mm)
        self.synthetic_generated += 1
        return TrainingVolume.build(f"synthetic-{name}-{self.synthetic_generated}", normalize_hu(hu, self.prep), lab)

    def refresh(self, rng: np.random.Generator, count: int) -> None:
        """Replace ``count`` random pool volumes by new ones."""
        for _ in range(min(count, len(self.pool))):
            self.pool[int(rng.integers(len(self.pool)))] = self.synthesize(rng)

    def draw(self, rng: np.random.Generator) -> TrainingVolume:
        """A random training volume: synthetic with probability ``synthetic_fraction``, else a real CT with a
        probability proportional to its number of vertebrae (every real vertebra is drawn equally often, so a
        whole-spine CT is not outweighed by a small crop)."""
        use_synthetic = bool(self.pool) and (not self.real or rng.random() < self.synthetic_fraction)
        if use_synthetic:
            return self.pool[int(rng.integers(len(self.pool)))]
        weights = np.array([max(len(v.vertebrae), 1) for v in self.real], dtype=float)
        return self.real[int(rng.choice(len(self.real), p=weights / weights.sum()))]

    def split_lines(self) -> list[str]:
        """Log lines naming the cases of each split: the real training CTs, the validation (or test) CTs, the
        validation masks without a CT (not used), the masks of ``data.synthetic_masks_root`` in validation/test
        folders (not used), and a warning naming the masks of ``data.verse_root`` used as synthesis sources only
        because no CT was found for them."""
        names = self.case_names
        lines = [f"train split, real CT(s): {', '.join(names['train']) or 'none'}",
                 f"validation/test split, CT(s) for the validation loss (never trained on): "
                 f"{', '.join(names['validation']) or 'none'}"]
        if names["unused"]:
            lines.append(f"validation/test split, mask(s) without a CT (not used): {', '.join(names['unused'])}")
        if names["unused_synthesis"]:
            lines.append(f"data.synthetic_masks_root: mask(s) in a validation/test folder, not used for synthesis "
                         f"(validation anatomy must not shape training): {', '.join(names['unused_synthesis'])}")
        if names["no_ct"]:
            lines.append(f"warning: no CT found for {len(names['no_ct'])} train-split mask(s) (looked for "
                         f"<prefix>_ct.nii.gz and <prefix>_ct.nii under the VerSe folder); they are used as synthesis "
                         f"sources only: {', '.join(names['no_ct'])}")
        return lines

    def summary(self) -> dict:
        return {
            "real_training_cases": self.real_names,
            "validation_cases": self.validation_names,
            "synthetic_source_masks": [name for name, _ in self.masks],
            "synthetic_anatomy_maps": [name for name, _ in self.anatomy_maps],
            "synthetic_composite_columns": [f"{self.masks[i][0]}+{self.masks[j][0]}" for i, j in self.stackable]
            if self.composite_column_share > 0 else [],
            "synthetic_volumes_generated": self.synthetic_generated,
            "synthetic_fraction": self.synthetic_fraction,
        }

