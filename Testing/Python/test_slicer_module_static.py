"""Static checks of the 3D Slicer module and extension files (no Slicer application needed).

Slicer loads ``SpineSegmentation/SpineSegmentation.py`` and looks for the classes named after the file; the
build copies what ``CMakeLists.txt`` lists; the widget finds its controls in the ``.ui`` by name and binds
them to the parameter node through ``SlicerParameterName``. A mismatch in any of these only shows when
Slicer runs, so it is checked here. The SNOMED CT codes are checked against DICOM PS3.16 CID 7603
("Vertebra"), written out below independently of ``terminology.py``.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from SpineSegmentationLib import anatomy
from SpineSegmentationLib.terminology import (
    TERMINOLOGY_CONTEXT_NAME,
    slicer_terminology_entry,
    terminology_context,
    vertebra_terminology,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO_ROOT / "SpineSegmentation"
MODULE_FILE = MODULE_DIR / "SpineSegmentation.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SpineSegmentation.ui"
TERM_FILE = MODULE_DIR / "Resources" / "Terminology" / "SegmentationCategoryTypeModifier-SpineSegmentation.term.json"

#: DICOM PS3.16 CID 7603 "Vertebra": level -> SCT code (C1..L5).
CID_7603 = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003", "C6": "36054005",
    "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001", "T11": "12989004",
    "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
}
SACRUM_SCT = "54735007"


def module_tree() -> ast.Module:
    return ast.parse(MODULE_FILE.read_text(encoding="utf-8"), filename=str(MODULE_FILE))


def classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def base_names(node: ast.ClassDef) -> list[str]:
    return [ast.unparse(base) for base in node.bases]


def ui_widgets() -> dict[str, ET.Element]:
    root = ET.parse(UI_FILE).getroot()
    return {w.get("name"): w for w in root.iter("widget")}


def cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"set({variable} ...) not found"
    return match.group(1).split()


# ---------------------------------------------------------------------------------------------------------


def test_every_python_file_parses():
    files = sorted(MODULE_DIR.rglob("*.py"))
    assert MODULE_FILE in files and len(files) >= 8
    for path in files:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_the_classes_slicer_looks_for_exist_with_the_right_bases():
    found = classes(module_tree())
    assert base_names(found["SpineSegmentation"]) == ["ScriptedLoadableModule"]
    assert base_names(found["SpineSegmentationWidget"]) == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert base_names(found["SpineSegmentationLogic"]) == ["ScriptedLoadableModuleLogic"]
    assert base_names(found["SpineSegmentationTest"]) == ["ScriptedLoadableModuleTest"]
    parameter_node = found["SpineSegmentationParameterNode"]
    assert [ast.unparse(d) for d in parameter_node.decorator_list] == ["parameterNodeWrapper"]
    test_methods = {f.name for f in found["SpineSegmentationTest"].body if isinstance(f, ast.FunctionDef)}
    assert {"setUp", "runTest", "test_ProcessExampleCT", "test_CancelLeavesSceneUnchanged"} <= test_methods


def test_helpers_import_without_qt():
    """The helpers import under slicer-core: no qt, ctk, slicer.util or slicer.ScriptedLoadableModule at module level."""
    for path in sorted((MODULE_DIR / "SpineSegmentationModuleLib").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {alias.name for n in top_level if isinstance(n, ast.Import) for alias in n.names}
        names |= {n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"qt", "ctk", "slicer.ScriptedLoadableModule", "slicer.util"}, path.name


def test_cmake_lists_every_module_file_and_each_exists():
    text = (MODULE_DIR / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"set\(MODULE_NAME SpineSegmentation\)", text)
    scripts = [s.replace("${MODULE_NAME}", "SpineSegmentation") for s in cmake_list(text, "MODULE_PYTHON_SCRIPTS")]
    resources = [s.replace("${MODULE_NAME}", "SpineSegmentation") for s in cmake_list(text, "MODULE_PYTHON_RESOURCES")]
    for relative in scripts + resources:
        assert (MODULE_DIR / relative).is_file(), f"CMakeLists.txt lists {relative}, which does not exist"
    on_disk = {str(p.relative_to(MODULE_DIR)) for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert on_disk == set(scripts), "every module script must be listed in CMakeLists.txt (and only those)"
    assert "slicerMacroBuildScriptedModule(" in text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text
    # the library and the model are installed beside the module, in their source-tree layout
    assert '"${_spineseg_source_root}/SpineSegmentationLib/*.py"' in text
    model_globs = re.findall(r'"\$\{_spineseg_source_root\}/(Resources/Models/spineseg-default/[^"]+)"', text)
    model_dir = REPO_ROOT / "Resources" / "Models" / "spineseg-default"
    needed = ["model.json", *(f["path"] for f in json.loads((model_dir / "model.json").read_text())["files"].values())]
    for name in needed:  # what SpineSegmentationLib.models.load_model reads must be installed
        assert any(fnmatch.fnmatch(f"Resources/Models/spineseg-default/{name}", g) for g in model_globs), name
    assert not any(fnmatch.fnmatch(f"Resources/Models/spineseg-default/{p.name}", g)
                   for g in model_globs for p in model_dir.glob("*.png")), "the loss curves need not be installed"
    assert list((REPO_ROOT / "SpineSegmentationLib").rglob("*.py")), "the library glob must match files"


def test_installed_model_location_matches_the_library_default():
    from SpineSegmentationLib.models import DEFAULT_MODEL_DIR
    from SpineSegmentationModuleLib.command import default_model_dir, library_root

    assert library_root(MODULE_DIR) == REPO_ROOT
    assert default_model_dir(REPO_ROOT) == DEFAULT_MODEL_DIR
    assert DEFAULT_MODEL_DIR.relative_to(REPO_ROOT) == Path("Resources/Models/spineseg-default")


def test_extension_cmake():
    text = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for required in ("project(SpineSegmentation)", "find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})",
                     "add_subdirectory(SpineSegmentation)", "include(${Slicer_EXTENSION_GENERATE_CONFIG})",
                     "include(${Slicer_EXTENSION_CPACK})"):
        assert required in text, required
    for variable in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                     "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        assert re.search(rf"set\({variable} ", text), variable
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    # set before include(${Slicer_USE_FILE}), which otherwise gives the package Slicer's licence and README
    use_file = text.index("include(${Slicer_USE_FILE})")
    for variable, name in (("EXTENSION_LICENSE_FILE", "LICENSE"), ("EXTENSION_README_FILE", "README.md")):
        match = re.search(rf"set\({variable} \$\{{CMAKE_CURRENT_SOURCE_DIR\}}/([^)]+)\)", text)
        assert match and match.group(1) == name and match.start() < use_file, variable
        assert (REPO_ROOT / name).is_file()


def test_extension_index_files_exist_where_the_urls_point():
    """The Extensions Index reads the icon and screenshots from the repository's main branch: each URL must name a
    PNG file of this repository; the licence is the Apache-2.0 the README states."""
    text = (REPO_ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "https://github.com/([^"]+)"\)', text).group(1)
    prefix = f"https://raw.githubusercontent.com/{homepage}/main/"
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        urls = re.search(rf'set\({variable} "([^"]+)"\)', text).group(1).split()
        assert urls, variable
        for url in urls:
            assert url.startswith(prefix), url
            path = REPO_ROOT / url[len(prefix):]
            assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    licence = (REPO_ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence


def test_ui_holds_every_widget_the_code_uses():
    widgets = ui_widgets()
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text(encoding="utf-8")))
    assert used, "the widget uses self.ui"
    missing = used - set(widgets)
    assert not missing, f"widgets used in SpineSegmentation.py but absent from the .ui: {sorted(missing)}"
    root = ET.parse(UI_FILE).getroot()
    assert root.find("class").text == "SpineSegmentation"
    assert root.find("widget").get("class") == "qMRMLWidget"


def test_ui_parameter_bindings_match_the_parameter_node():
    node = classes(module_tree())["SpineSegmentationParameterNode"]
    fields = {s.target.id: ast.unparse(s.annotation) for s in node.body if isinstance(s, ast.AnnAssign)}
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = widget.get("class")
    assert set(bound) == set(fields)
    # widget classes the parameterNodeWrapper GUI connectors accept for these types
    assert bound["inputVolume"] == "qMRMLNodeComboBox" and fields["inputVolume"] == "vtkMRMLScalarVolumeNode"
    assert bound["outputSegmentation"] == "qMRMLNodeComboBox"
    assert fields["outputSegmentation"] == "vtkMRMLSegmentationNode"
    assert bound["device"] == "QComboBox" and "Choice(" in fields["device"]
    assert bound["modelFolder"] == "ctkPathLineEdit" and fields["modelFolder"] == "Path"


def test_the_parameter_node_binding_is_undone_on_slicer_5_6_and_5_8():
    """Slicer 5.6.2 and 5.8.1's ``connectGui`` returns None (``parameterNodeWrapper/wrapper.py``; fixed in 5.10.0 by
    Slicer commit b5a65a49), so ``disconnectGui(tag)`` did nothing there: every module entry and scene close bound
    the same widgets once more, and the widgets kept writing into a closed scene's parameter node. The widget binds
    with ``connectParametersToGui`` (its tag returned at v5.6.2-v5.10.0) through ``PARAMETER_WIDGETS``, which must
    name, for each parameter, the .ui widget whose ``SlicerParameterName`` is that parameter."""
    tree = module_tree()
    called = [c.func.attr for c in ast.walk(tree) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)]
    assert "connectGui" not in called and called.count("connectParametersToGui") == 1
    tags = [ast.unparse(n.targets[0]) for n in ast.walk(tree) if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Call) and ast.unparse(n.value.func).endswith(".connectParametersToGui")]
    assert tags == ["self._parameterNodeGuiTag"]
    disconnects = [ast.unparse(c.args[0]) for c in ast.walk(tree) if isinstance(c, ast.Call)
                   and isinstance(c.func, ast.Attribute) and c.func.attr == "disconnectGui"]
    assert disconnects and set(disconnects) == {"self._parameterNodeGuiTag"}
    for method in ("cleanup", "exit", "setParameterNode"):  # Reload, another module, another parameter node
        assert "disconnectGui(self._parameterNodeGuiTag)" in ast.unparse(_widget_method(method)), method
    (assignment,) = [n for n in tree.body if isinstance(n, ast.Assign)
                     and ast.unparse(n.targets[0]) == "PARAMETER_WIDGETS"]
    mapping = ast.literal_eval(assignment.value)
    widgets = ui_widgets()
    for parameter, name in mapping.items():
        bound = [p.find("string").text for p in widgets[name].findall("property")
                 if p.get("name") == "SlicerParameterName"]
        assert bound == [parameter], (parameter, name)
    node = classes(tree)["SpineSegmentationParameterNode"]
    assert set(mapping) == {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
    # the model folder through the module's connector, which shows the shipped model as an empty field, not "."
    assert 'gui["modelFolder"] = self._modelFolderConnector()' in MODULE_FILE.read_text(encoding="utf-8")


def _widget_method(name: str) -> ast.FunctionDef:
    widget = classes(module_tree())["SpineSegmentationWidget"]
    return next(n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == name)


def test_every_correction_control_follows_what_can_run_and_says_why():
    """The correction buttons were enabled with no CT, no result, no selected vertebra or nothing to undo (only a
    dialog after the click said so). ``correctionBlockers`` decides (run in test_slicer_module_headless.py); here:
    each of its controls is a button of the section, and the buttons are updated whenever what they need changes
    (parameter node: CT and output; the table's current row; a correction, an undo or a refresh of the table)."""
    tree = module_tree()
    blockers = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "correctionBlockers")
    (returned,) = [n.value for n in ast.walk(blockers) if isinstance(n, ast.Return)]
    controls = {ast.literal_eval(key) for key in returned.keys}
    setup = _widget_method("_setupCorrections")
    (built,) = [n for n in ast.walk(setup) if isinstance(n, ast.Assign)
                and ast.unparse(n.targets[0]) == "self._correctionControls"]
    pairs = [n for n in ast.walk(built.value) if isinstance(n, ast.Tuple) and len(n.elts) == 2
             and isinstance(n.elts[0], ast.Constant)]
    assert {p.elts[0].value for p in pairs} == controls
    assert all(ast.unparse(p.elts[1]).endswith("Button") for p in pairs)
    assert "'currentCellChanged(int,int,int,int)'" in ast.unparse(setup)
    for caller in ("_checkCanApply", "_refreshFromSegments"):
        assert "self._updateCorrectionControls()" in ast.unparse(_widget_method(caller)), caller


#: The signals the widget connects by signature, with the class that declares them (Qt 5.15's documentation;
#: ``startupCompleted()``: Slicer's qSlicerApplication.h, checked by check_slicer_api_table.py). A signature that
#: its class lacks is only a warning on Slicer's console, and the control does nothing.
SIGNALS = {
    "startupCompleted()": "qSlicerApplication",
    "timeout()": "QTimer",
    "clicked(bool)": "QAbstractButton",
    "cellClicked(int,int)": "QTableWidget",
    "currentCellChanged(int,int,int,int)": "QTableWidget",
    "itemClicked(QListWidgetItem*)": "QListWidget",
}
#: The class of each object the widget connects a signal of.
SIGNAL_SENDERS = {"slicer.app": "qSlicerApplication", "self._pollTimer": "QTimer", "self.ui.applyButton": "QPushButton",
                  "self.ui.vertebraTable": "QTableWidget", "self.alternativesList": "QListWidget"}
QT_BASES = {"QPushButton": {"QAbstractButton"}}


def test_every_connected_signal_exists_on_its_sender():
    tree = module_tree()
    connected = [(ast.unparse(c.func.value), c.args[0].value) for c in ast.walk(tree) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Attribute) and c.func.attr == "connect" and c.args
                 and isinstance(c.args[0], ast.Constant) and isinstance(c.args[0].value, str)]
    assert len(connected) >= 10
    ui = ui_widgets()
    for sender, signal in connected:
        assert signal in SIGNALS, f"{sender}: {signal} is not a known signal"
        cls = SIGNAL_SENDERS.get(sender) or ("QPushButton" if sender.endswith("Button") else None)
        if sender.startswith("self.ui."):
            assert ui[sender.removeprefix("self.ui.")].get("class") == cls, sender
        assert SIGNALS[signal] in {cls} | QT_BASES.get(cls, set()), (sender, signal)


def test_the_output_tooltip_says_which_actions_change_the_selected_segmentation():
    """It said only that a segmentation with segments "is not changed", true of Apply; the corrections work on the
    selected segmentation and change it (README, "The Slicer module")."""
    tip = ui_widgets()["outputSegmentationSelector"].find("property[@name='toolTip']/string").text
    assert "Apply never changes a segmentation that already has segments" in tip
    assert "Corrections" in tip and "changes the segmentation selected here" in tip


def test_closing_the_scene_clears_the_last_run_s_message():
    """The status line kept "17 vertebrae. Incomplete: T11." after File > Close Scene, about a scene that was gone."""
    text = ast.unparse(_widget_method("onSceneStartClose"))
    assert "self.ui.statusLabel.text = ''" in text
    assert text.index("self.ui.statusLabel.text = ''") < text.index("self._cancelRun()")


def test_resource_paths_used_by_the_module_exist():
    text = MODULE_FILE.read_text(encoding="utf-8")
    for relative in re.findall(r'resourcePath\("([^"]+)"\)', text):
        assert (MODULE_DIR / "Resources" / relative).is_file(), relative
    term = re.search(r'TERMINOLOGY_FILE = "([^"]+)"', text).group(1)
    assert MODULE_DIR / "Resources" / term == TERM_FILE


def test_the_terminology_is_loaded_when_slicer_has_started_not_when_the_module_is_first_opened():
    """Slicer 5.6 names a loaded scene's vertebra codes only from a loaded context: the module's constructor (run at
    Slicer's startup) connects ``startupCompleted()`` to ``loadTerminology``, as Slicer's DICOM and SampleData
    modules defer work (the signal comes before the command line's files are loaded), and the logic calls the same
    function; nothing else loads the terminology file (loaded once: the function checks what is loaded)."""
    tree = ast.parse(MODULE_FILE.read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def calls(node) -> list[ast.Call]:
        return [c for c in ast.walk(node) if isinstance(c, ast.Call)]

    def method(class_name: str, name: str):
        return next(n for n in classes[class_name].body if isinstance(n, ast.FunctionDef) and n.name == name)

    connected = [[ast.unparse(a) for a in c.args] for c in calls(method("SpineSegmentation", "__init__"))
                 if ast.unparse(c.func) == "slicer.app.connect"]
    assert ["'startupCompleted()'", "loadTerminology"] in connected
    assert "loadTerminology" in functions
    assert any(ast.unparse(c.func) == "loadTerminology" for c in calls(method("SpineSegmentationLogic", "__init__")))
    loaders = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
               and any(ast.unparse(c.func).endswith(".LoadTerminologyFromFile") for c in calls(node))]
    assert loaders == ["loadTerminology"]
    assert any(ast.unparse(c.func).endswith(".GetLoadedTerminologyNames") for c in calls(functions["loadTerminology"]))


# ---------------------------------------------------------------------------------------------------------
# terminology: the shipped .term.json and terminology.py agree, and both agree with DICOM CID 7603


def test_term_json_is_the_terminology_context_of_the_library():
    document = json.loads(TERM_FILE.read_text(encoding="utf-8"))
    assert document == terminology_context(), "regenerate the .term.json from terminology.terminology_context()"
    assert document["SegmentationCategoryTypeContextName"] == TERMINOLOGY_CONTEXT_NAME
    (category,) = document["SegmentationCodes"]["Category"]
    assert (category["CodingSchemeDesignator"], category["CodeValue"]) == ("SCT", "123037004")
    codes = {t["CodeValue"]: t["CodeMeaning"] for t in category["Type"]}
    for level, code in CID_7603.items():
        assert codes.get(code) == f"{level} vertebra", level
    assert codes.get(SACRUM_SCT) == "Sacrum"
    for entry in category["Type"]:
        assert entry["CodingSchemeDesignator"] == "SCT"
        assert len(entry["recommendedDisplayRGBValue"]) == 3
        assert all(0 <= c <= 255 for c in entry["recommendedDisplayRGBValue"])


@pytest.mark.parametrize("name", list(CID_7603) + ["S"])
def test_terminology_codes_match_dicom(name):
    label = anatomy.verse_label(name)
    term = vertebra_terminology(label)
    expected = CID_7603.get(name, SACRUM_SCT)
    assert term.type[:2] == ("SCT", expected)
    assert term.category == ("SCT", "123037004", "Anatomical Structure")
    assert term.region is None and not term.fallback
    assert f"~SCT^{expected}^" in slicer_terminology_entry(label)


@pytest.mark.parametrize("name, region", [("T13", "122495006"), ("L6", "122496007")])
def test_transitional_vertebrae_use_generic_vertebra_with_region(name, region):
    term = vertebra_terminology(anatomy.verse_label(name))
    assert term.fallback and term.name == name
    assert term.type == ("SCT", "51282000", "Vertebra")
    assert term.region[:2] == ("SCT", region)
    entry = slicer_terminology_entry(anatomy.verse_label(name))
    assert entry.endswith(f"~Anatomic codes - DICOM master list~SCT^{region}^{term.region[2]}~^^")


def _panel_layout_calls(method: str) -> list[str]:
    """The calls on the module panel's layout (``self.layout``) in a widget method, in order, as source text."""
    calls = [n for n in ast.walk(_widget_method(method)) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and ast.unparse(n.func.value) == "self.layout"]
    return [ast.unparse(n) for n in sorted(calls, key=lambda n: (n.lineno, n.col_offset))]


def test_the_corrections_section_follows_the_vertebra_table_without_a_gap():
    """The widget adds its Corrections section to the module panel after the ``.ui`` widget. The ``.ui`` ended in a
    vertical spacer, as Slicer's scripted-module template does: that widget grew to the panel's height (an expanding
    item of its layout lets a widget of the default ``Preferred`` policy grow, Qt 5.15
    ``QWidgetItem::expandingDirections``), so Corrections sat at the panel's bottom, apart from the table. A stretch
    after Corrections (``addStretch(1)``) took the extra height instead, leaving the 24-row vertebra table at its size
    hint (192 px, about 5 rows, on an 1100 px panel); with no stretch at all, an open Corrections section (its list
    of alternatives is expanding) takes a share of it as an empty box. The ``.ui`` widget added with stretch 1 takes
    it all (an item with a stretch factor grows before those without one, ``QBoxLayout``): measured with PyQt5 5.15
    offscreen on a mock of the panel, table 588 px (Corrections closed) and 362 px (open), Corrections right below
    it. Qt cannot run here: the ``.ui`` and the source."""
    top = ET.parse(UI_FILE).getroot().find("widget").find("layout")
    assert [item[0].tag for item in top.findall("item")][-1] == "widget"  # no spacer at the end of the .ui
    setup = _panel_layout_calls("setup")
    assert setup == ["self.layout.addWidget(uiWidget, 1)"]  # the .ui widget takes the extra height; no stretch
    assert _panel_layout_calls("_setupCorrections") == ["self.layout.addWidget(section)"]  # at its size hint
    body = ast.unparse(_widget_method("setup"))
    assert body.index("self.layout.addWidget(uiWidget, 1)") < body.index("self._setupCorrections()")
