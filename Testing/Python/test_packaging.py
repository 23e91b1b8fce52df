"""The wheel: built from a copy of the sources, installed into a fresh virtual environment, it carries the shipped
model (``importlib.resources``) and segments the example CT from outside the source tree.

The fresh environment gets the wheel only; its dependencies (torch, SimpleITK, ...) are the ones of the
interpreter running the tests, put on its path by a ``.pth`` file (no network, and the same torch build). The wheel
is built without build isolation (no network), with the setuptools the ``test`` extra installs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
#: What the wheel is built from (the rest of the repository is not part of it).
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "SpineSegmentationLib", "Resources/Models/spineseg-default")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for relative in WHEEL_SOURCES:
        origin = REPO_ROOT / relative
        if origin.is_dir():
            shutil.copytree(origin, source / relative, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, source / relative)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    (built,) = out.glob("spinesegmentationlib-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed; returns its interpreter."""
    root = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(root)
    python = root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "test_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, text=True)
    return python


def test_the_wheel_carries_the_model_and_type_marker(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("model.json", "iterative_fcn.safetensors", "attention_net.safetensors", "MODEL_CARD.md"):
        assert f"SpineSegmentationLib/default_model/{name}" in names
    assert "SpineSegmentationLib/py.typed" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)


def test_the_installed_wheel_segments_the_example_ct_outside_the_source_tree(fresh_env, real_ct, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [str(fresh_env), "-c", "import SpineSegmentationLib.models as m; print(m.__file__); print(m.default_model_dir())"],
        cwd=work, check=True, capture_output=True, text=True).stdout.split()
    env_root = fresh_env.parent.parent
    assert all(Path(p).resolve().is_relative_to(env_root.resolve()) for p in where), where  # not the source tree
    subprocess.run([str(fresh_env), "-m", "SpineSegmentationLib.cli", "segment", str(real_ct), "-o", "out",
                    "--device", "cpu"], cwd=work, check=True, capture_output=True, text=True)
    report = json.loads((work / "out" / "vertebrae.json").read_text())
    names = {v["name"] for v in report["vertebrae"]}
    assert {"L1", "L2", "L3", "L4", "L5"} <= names, names
