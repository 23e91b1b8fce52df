"""Check ``Testing/Python/slicer_api_table.py`` against Slicer's source at the supported versions.

Usage::

    git clone --bare https://github.com/Slicer/Slicer.git slicer.git      # once
    python Testing/check_slicer_api_table.py --slicer-git slicer.git [--tags v5.6.2 v5.8.1 v5.10.0 v5.12.3]

For every table entry whose source is a file of Slicer's repository ("A|B": the file moved from A to B), the file
must exist at each tag and declare the name: a whole word (a method, an enum value or a Python function) or, for
``GetX``/``SetX``, a VTK accessor macro of ``X`` (``vtkGetMacro(X, ...)``, ``vtkSetStringMacro(X)``, ...). Prints
one line per problem and exits with status 1 when there is any, else prints a summary and exits with 0.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "Python"))
from slicer_api_table import IMPORTS, METHODS, SLICER_NAMESPACE  # noqa: E402

#: The oldest supported Slicer first.
DEFAULT_TAGS = ("v5.6.2", "v5.8.1", "v5.10.0", "v5.12.3")
NOT_IN_SLICER = ("VTK", "Qt5", "Python", "SlicerPyTorch")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slicer-git", required=True, type=Path, help="a clone of Slicer's repository (bare is fine)")
    parser.add_argument("--tags", nargs="+", default=list(DEFAULT_TAGS))
    args = parser.parse_args(argv)

    @lru_cache(maxsize=None)
    def source(tag: str, path: str):
        done = subprocess.run(["git", f"--git-dir={args.slicer_git}", "show", f"{tag}:{path}"],
                              capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else None

    def declares(text: str, name: str) -> bool:
        if re.search(rf"\b{re.escape(name)}\b", text):
            return True
        accessor = re.match(r"(Get|Set)(\w+)", name)
        return bool(accessor) and bool(re.search(
            rf"vtk{accessor.group(1)}\w*Macro\(\s*{re.escape(accessor.group(2))}\b", text))

    def first_source(tag: str, paths: str):
        return next((text for text in (source(tag, p) for p in paths.split("|")) if text is not None), None)

    checks = [(name, path) for name, (_, path) in METHODS.items() if path not in NOT_IN_SLICER]
    checks += [(name.rsplit(".", 1)[1], path) for name, path in SLICER_NAMESPACE.items()
               if path.endswith(".py") and name.split(".")[1] not in ("mrmlScene", "modules")]
    checks += [(name.rsplit(".", 1)[1], path) for name, path in IMPORTS.items()]
    files = sorted({path for path in SLICER_NAMESPACE.values() if path not in NOT_IN_SLICER})
    problems = []
    for tag in args.tags:
        problems += [f"{tag}: {path} does not exist" for path in files if first_source(tag, path) is None]
        for name, path in checks:
            text = first_source(tag, path)
            if text is None:
                problems.append(f"{tag}: {path} does not exist (for {name})")
            elif not declares(text, name):
                problems.append(f"{tag}: {name} is not in {path}")
    for line in problems:
        print(line)
    if not problems:
        print(f"{len(checks)} names and {len(files)} files checked at {', '.join(args.tags)}: all present")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
