"""A minimal ``slicer`` application namespace built from the PyPI ``slicer-core`` package, for running the module's
own classes (``SpineSegmentation.py``: ``SpineSegmentationLogic``, the parameter node) without the application.

``slicer-core`` provides Slicer's MRML and module-logic classes (``vtkMRMLScene``, the Segmentations, Markups and
Terminologies logics, ...) and ``slicer.util``; what only the application provides is added here, each piece as
small as the module needs and built on the real classes where they exist:

- ``slicer.mrmlScene``: a real ``vtkMRMLScene``;
- ``slicer.modules.terminologies.logic()``: the real ``vtkSlicerTerminologiesModuleLogic`` of ``slicer-core``
  (the markups logic, which only the widget uses, needs the application's views and is left out);
- ``slicer.ScriptedLoadableModule``: base classes whose ``getParameterNode`` keeps one
  ``vtkMRMLScriptedModuleNode`` per module in the scene (singleton tag = module name, as in Slicer); the test base
  is a ``unittest.TestCase``, as Slicer's, whose ``delayDisplay`` records its messages;
- ``slicer.parameterNodeWrapper``: ``parameterNodeWrapper``, ``Choice``, ``Default``: typed properties stored in
  that node (node references for MRML node types, text parameters otherwise); no GUI binding;
- ``slicer.i18n`` (``tr``, ``translate``: the text unchanged), ``MRMLCorePython`` (the MRML classes), and empty
  ``qt`` and ``ctk`` modules (only the widget, which is not run here, uses them).

Nothing is installed when the real module is already importable (inside Slicer).
"""

from __future__ import annotations

import sys
import types
import typing
import unittest
from pathlib import Path

import slicer
import vtk

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "SpineSegmentation"


class _ModuleLogics(types.SimpleNamespace):
    """``slicer.modules``: one object per module whose ``logic()`` returns its (real) logic."""


def _module(logic) -> types.SimpleNamespace:
    return types.SimpleNamespace(logic=lambda: logic)


# ---- slicer.ScriptedLoadableModule ---------------------------------------------------------------------------


class ScriptedLoadableModule:
    def __init__(self, parent) -> None:
        self.parent = parent


class ScriptedLoadableModuleLogic:
    """``getParameterNode``: the module's one ``vtkMRMLScriptedModuleNode`` in ``slicer.mrmlScene``."""

    def __init__(self, parent=None) -> None:
        self.moduleName = type(self).__name__.removesuffix("Logic")

    def getParameterNode(self):
        scene = slicer.mrmlScene
        node = scene.GetSingletonNode(self.moduleName, "vtkMRMLScriptedModuleNode")
        if node is None:
            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(self.moduleName)
            node.SetName(self.moduleName)
            node.SetAttribute("ModuleName", self.moduleName)
            node = scene.AddNode(node)
        return node


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None) -> None:
        self.parent = parent


class ScriptedLoadableModuleTest(unittest.TestCase):
    """Slicer's base (a ``unittest.TestCase``); ``delayDisplay`` keeps the messages in ``displayed`` instead of
    showing them."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.displayed: list[str] = []

    def delayDisplay(self, message, requestedDelay=None, msec=None) -> None:
        self.displayed.append(str(message))


# ---- slicer.parameterNodeWrapper -----------------------------------------------------------------------------


class Choice:
    def __init__(self, choices) -> None:
        self.choices = list(choices)


class Default:
    def __init__(self, value) -> None:
        self.value = value


def _parameter_property(name: str, hint):
    base, extras = hint, ()
    if typing.get_origin(hint) is typing.Annotated:
        base, *extras = typing.get_args(hint)
    default = next((e.value for e in extras if isinstance(e, Default)), None)
    choices = next((e.choices for e in extras if isinstance(e, Choice)), None)
    is_node = isinstance(base, type) and issubclass(base, slicer.vtkMRMLNode)

    def getter(self):
        node = self.parameterNode
        if is_node:
            return node.GetNodeReference(name)
        text = node.GetParameter(name)
        if not text:
            return default if default is not None else (Path() if base is Path else base())
        return base(text)

    def setter(self, value):
        node = self.parameterNode
        if is_node:
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
            return
        if choices is not None and value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
        node.SetParameter(name, str(value))

    return property(getter, setter)


def parameterNodeWrapper(cls):
    """A class whose annotated attributes are stored in the wrapped ``vtkMRMLScriptedModuleNode``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    namespace = {"__init__": lambda self, node: setattr(self, "parameterNode", node), "__doc__": cls.__doc__}
    namespace.update({name: _parameter_property(name, hint) for name, hint in hints.items()})
    return type(cls.__name__, (), namespace)


# ---- installation --------------------------------------------------------------------------------------------


def _add_module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    if "." in name:
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, module)
    return module


def install() -> None:
    """Build the namespace (once per process; a new ``slicer.mrmlScene`` each call) and put the module folder on
    ``sys.path`` as Slicer does for scripted modules."""
    slicer.mrmlScene = slicer.vtkMRMLScene()
    slicer.modules = _ModuleLogics(terminologies=_module(slicer.vtkSlicerTerminologiesModuleLogic()))
    if "slicer.ScriptedLoadableModule" not in sys.modules:
        _add_module("slicer.ScriptedLoadableModule", ScriptedLoadableModule=ScriptedLoadableModule,
                    ScriptedLoadableModuleLogic=ScriptedLoadableModuleLogic,
                    ScriptedLoadableModuleWidget=ScriptedLoadableModuleWidget,
                    ScriptedLoadableModuleTest=ScriptedLoadableModuleTest)
        _add_module("slicer.parameterNodeWrapper", parameterNodeWrapper=parameterNodeWrapper, Choice=Choice,
                    Default=Default)
        _add_module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
        _add_module("MRMLCorePython", **{n: getattr(slicer, n) for n in dir(slicer) if n.startswith("vtkMRML")})
        _add_module("qt")
        _add_module("ctk")
    if str(MODULE_DIR) not in sys.path:
        sys.path.insert(0, str(MODULE_DIR))


def vtk_string_values(array: vtk.vtkStringArray) -> list[str]:
    return [array.GetValue(i) for i in range(array.GetNumberOfValues())]
