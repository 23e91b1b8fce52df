"""API conformance of the Slicer module with Slicer 5.6, the oldest version the extension supports.

Every Slicer, MRML, VTK, Qt and CTK name the module's code calls (``SpineSegmentation.py`` and
``SpineSegmentationModuleLib/``) must be in ``slicer_api_table.py``, where each one names the Slicer 5.6 source file
it was checked against (``Testing/check_slicer_api_table.py`` repeats that check on Slicer's repository at
v5.6.2, v5.8.1, v5.10.0 and v5.12.3). Where ``slicer-core`` or ``vtk`` provides the class, the name is also checked
on the class itself. A call of a method that is not in the table fails here, e.g. the
``IsTerminologyContextLoaded`` (Slicer 5.10+) that broke the module in 5.6 and 5.8.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import slicer
import slicer.util
import vtk

from slicer_api_table import IMPORTS, METHODS, QT_METHODS, SLICER_NAMESPACE

MODULE_DIR = Path(__file__).resolve().parents[2] / "SpineSegmentation"
#: Roots whose lower-case method calls are Qt/CTK calls, besides names assigned from them.
QT_ROOTS = ("qt", "ctk", "self.ui")


def module_files(module_dir: Path = MODULE_DIR) -> list[Path]:
    return [module_dir / "SpineSegmentation.py", *sorted((module_dir / "SpineSegmentationModuleLib").glob("*.py"))]


def _dotted(node: ast.AST) -> str:
    return ast.unparse(node)


def _qt_names(tree: ast.AST) -> set[str]:
    """Names and ``self.x`` attributes that hold Qt/CTK objects: assigned from ``qt.*``/``ctk.*``/``self.ui.*`` or
    from a call on such an object (``item = table.item(...)``), to a fixed point."""
    names: set[str] = set()
    assignments = [(t, n.value) for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets]
    changed = True
    while changed:
        changed = False
        for target, value in assignments:
            source = _dotted(value.func if isinstance(value, ast.Call) else value)
            root = source.rsplit(".", 1)[0] if isinstance(value, ast.Call) else source
            if (source.startswith(QT_ROOTS) or root in names or source.startswith("self.ui.")) and (
                    _dotted(target) not in names):
                names.add(_dotted(target))
                changed = True
    return names


def api_uses(path: Path) -> dict[str, set[str]]:
    """What one file uses: ``imports`` (``from slicer... import``), ``methods`` (CamelCase calls and attributes of Slicer/VTK objects), ``slicer`` (dotted
    ``slicer.*`` names up to the first CamelCase member), ``qt`` (lower-case calls on Qt/CTK objects)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    qt_objects = _qt_names(tree)
    uses = {"methods": set(), "slicer": set(), "qt": set(), "imports": set()}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("slicer",
                                                                                             "MRMLCorePython"):
            uses["imports"] |= {f"{node.module}.{alias.name}" for alias in node.names}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, receiver = node.func.attr, _dotted(node.func.value)
            if name[:1].isupper():
                uses["methods"].add(name)
            elif receiver.startswith(QT_ROOTS) or receiver in qt_objects:
                uses["qt"].add(name)
        if isinstance(node, ast.Attribute):
            parts = _dotted(node).split(".")
            if parts[0] in ("slicer", "SampleData") and len(parts) > 1 and "(" not in _dotted(node):
                kept = [parts[0]]
                for part in parts[1:]:
                    if part[:1].isupper() and not part.startswith("SampleData"):
                        uses["methods"].add(part)
                        break
                    kept.append(part)
                if len(kept) > 1:
                    uses["slicer"].add(".".join(kept))
    return uses


def unchecked_uses(paths: list[Path]) -> list[str]:
    """Every use in ``paths`` that the table does not cover, as "file: kind name" lines (empty = conformant)."""
    problems = []
    for path in paths:
        uses = api_uses(path)
        for name in sorted(uses["methods"]):
            if name not in METHODS:
                problems.append(f"{path.name}: method {name} is not checked against Slicer 5.6")
        problems += [f"{path.name}: Slicer name {name} is not checked against Slicer 5.6"
                     for name in sorted(uses["slicer"]) if name not in SLICER_NAMESPACE]
        problems += [f"{path.name}: import {name} is not checked against Slicer 5.6"
                     for name in sorted(uses["imports"]) if name not in IMPORTS]
        problems += [f"{path.name}: Qt/CTK method {name} is not checked"
                     for name in sorted(uses["qt"]) if name not in QT_METHODS]
    return problems


def test_every_call_of_the_module_is_checked_against_slicer_5_6():
    assert unchecked_uses(module_files()) == []


def test_the_check_fails_on_a_call_that_slicer_5_6_does_not_have(tmp_path):
    copy = tmp_path / "SpineSegmentation"
    (copy / "SpineSegmentationModuleLib").mkdir(parents=True)
    for path in module_files():
        (copy / path.relative_to(MODULE_DIR)).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    module = copy / "SpineSegmentation.py"
    module.write_text(module.read_text(encoding="utf-8") + (
        "\n\ndef loaded(name):\n"
        "    return slicer.modules.terminologies.logic().IsTerminologyContextLoaded(name)\n"), encoding="utf-8")
    assert unchecked_uses(module_files(copy)) == [
        "SpineSegmentation.py: method IsTerminologyContextLoaded is not checked against Slicer 5.6",
    ]


def _class(name: str):
    return getattr(slicer, name, None) or getattr(vtk, name, None)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_table_entries_exist_on_the_slicer_core_classes(name):
    """Where slicer-core or vtk provides the class, the method is there (catches typos in the table and code)."""
    class_name, source = METHODS[name]
    cls = _class(class_name)
    if cls is None:  # Qt, Python, the PyTorch extension, or a logic only the application has
        assert source in ("Qt5", "Python", "SlicerPyTorch") or source.startswith("Modules/"), (name, source)
        return
    assert hasattr(cls, name), f"{class_name}.{name} does not exist in slicer-core/vtk"


def test_slicer_namespace_entries_exist_in_slicer_core():
    for name in SLICER_NAMESPACE:
        parts = name.split(".")
        if parts[0] != "slicer":
            continue  # SampleData: a module of the application
        if parts[1] == "util" and len(parts) == 3:
            assert hasattr(slicer.util, parts[2]), name
        elif parts[1].startswith("vtk"):
            assert hasattr(slicer, parts[1]), name
