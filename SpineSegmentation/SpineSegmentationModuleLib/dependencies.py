"""The Python packages the segmentation process needs in Slicer's Python, and their installation.

Nothing is installed at import time or without the user's consent. Slicer ships numpy and SimpleITK;
torch comes from the PyTorch extension (``PyTorchUtils``, which picks the build for the GPU driver);
the other packages are installed from PyPI with ``slicer.util.pip_install`` after the user agrees.
"""

from __future__ import annotations

import importlib.util
import subprocess
from typing import Callable, Optional

#: import name -> pip requirement, installed with slicer.util.pip_install (see pyproject.toml).
PIP_PACKAGES: dict[str, str] = {
    "scipy": "scipy>=1.10",
    "safetensors": "safetensors>=0.4",
    "tqdm": "tqdm>=4.60",
    "matplotlib": "matplotlib>=3.7",
    "slicerio": "slicerio>=1.1",
    "psutil": "psutil>=5.9",
}
#: Minimum torch version (pyproject.toml).
TORCH_REQUIREMENT = ">=2.1"


def missing_packages(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names of the required packages that are not installed ("torch" included)."""
    names = ["torch", *PIP_PACKAGES]
    return [name for name in names if find_spec(name) is None]


def install_missing(confirm: Optional[Callable[[str], bool]] = None) -> bool:
    """Install the missing packages after the user agrees; run inside the Slicer application.

    Args:
        confirm: asks the user (text -> True to proceed); default ``slicer.util.confirmOkCancelDisplay``.

    Returns:
        True when everything is installed (now or before), False when the user declined.

    Raises:
        ValueError: the PyTorch extension is missing, or installing torch or the other packages failed (the message
            says what to do).
    """
    missing = missing_packages()
    if not missing:
        return True
    import slicer

    confirm = confirm or (lambda text: slicer.util.confirmOkCancelDisplay(text, "SpineSegmentation: install packages"))
    pip = [PIP_PACKAGES[name] for name in missing if name in PIP_PACKAGES]
    text = ("SpineSegmentation needs Python packages that are not installed yet: " + ", ".join(missing) + ".\n"
            "Installing them downloads several hundred MB (PyTorch is the largest) and may take minutes. "
            "Click OK to install now.")
    if not confirm(text):
        return False
    step = "torch"
    try:
        if "torch" in missing:
            _install_torch()
        step = ", ".join(pip)
        if pip:
            slicer.util.pip_install(pip)
    except (subprocess.CalledProcessError, OSError, RuntimeError, ImportError) as error:
        # pip or light-the-torch failed: slicer.util raises CalledProcessError for a non-zero exit (logProcessOutput
        # at v5.6.2-v5.10.0, slicer/packaging.py at v5.12.3), RuntimeError without PythonSlicer, OSError where the
        # process cannot start; the PyTorch extension imports torch once installed
        raise ValueError(
            f"Installing {step} failed ({error}). pip's messages are in the Python console (in a batch run: the "
            "terminal); e.g. no network, a proxy or no write access to Slicer's folder. Try again once that is fixed."
        ) from error
    importlib.invalidate_caches()  # the import system's directory listings predate what was just installed
    still = missing_packages()
    if still:
        raise ValueError(f"these packages are still missing after installation: {', '.join(still)}; "
                         "see the Python console for pip's messages")
    return True


def _install_torch() -> None:
    """torch through the PyTorch extension (``PyTorchUtils``, which picks the build for the GPU driver).

    Raises:
        ValueError: the PyTorch extension is not installed, or its installation returned no torch.
    """
    try:
        import PyTorchUtils
    except ModuleNotFoundError as error:
        raise ValueError(
            "SpineSegmentation needs the PyTorch extension: install 'PyTorch' in the Extensions Manager, "
            "restart Slicer and try again"
        ) from error
    torchLogic = PyTorchUtils.PyTorchUtilsLogic()
    if not torchLogic.torchInstalled():
        torch = torchLogic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT)
        if torch is None:
            raise ValueError("PyTorch could not be installed; open the 'PyTorch Utils' module to install it")
