"""Every text file the library and the Slicer module read or write names its encoding.

Without ``encoding=`` Python takes the locale's: cp1252 on a Windows computer set up for Western Europe (for the
command line's Python, and in Slicer 5.6-5.10; Slicer 5.12 sets ``PYTHONUTF8``, ``SuperBuild/External_python.cmake``).
A training configuration saved as UTF-8 naming a folder "Müller" would be read as "MÃ¼ller" (a file not found), and a
model card holding a "≥" could not be written (``UnicodeEncodeError``). The project's text files (JSON, CSV, Markdown)
are UTF-8, and are read and written as such.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(REPO / "SpineSegmentationLib").rglob("*.py"), *(REPO / "SpineSegmentation").rglob("*.py")])


def _text_calls_without_encoding(tree: ast.AST) -> list[int]:
    """Lines of calls that open a text file and pass no ``encoding``: ``open``, ``x.open`` and ``x.fdopen`` not in a
    binary mode (``os.open``, which takes flags, aside) and ``x.read_text`` / ``x.write_text``."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name in ("read_text", "write_text") and isinstance(func, ast.Attribute):
            lines.append(node.lineno)
        elif name in ("open", "fdopen") and not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                                                 and func.value.id == "os" and name == "open"):
            # the mode: open(file, mode), fdopen(fd, mode), gzip.open(file, mode), path.open(mode)
            modes = [a for a in node.args[:2] if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and set(a.value) <= set("rwxabt+")]
            mode = modes[0] if modes else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if not (isinstance(mode, ast.Constant) and "b" in str(mode.value)):
                lines.append(node.lineno)
    return lines


def test_the_check_finds_a_text_file_opened_without_an_encoding():
    tree = ast.parse('open(p)\nopen(p, "w", newline="")\nopen(p, "rb")\nopen(p, mode="wb")\n'
                     'p.read_text()\np.write_text(s)\np.read_text(encoding="utf-8")\nopen(p, encoding="utf-8")\n'
                     '(d / "a.csv").open("w")\nos.fdopen(fd, "w")\nos.open(p, os.O_RDONLY)\ngzip.open(p, "rb")\n'
                     '(d / "a.bin").open("rb")\npath.open("rb")\npath.open()\n')
    assert _text_calls_without_encoding(tree) == [1, 2, 5, 6, 9, 10, 15]


def test_every_text_file_is_opened_with_its_encoding():
    found = {str(path.relative_to(REPO)): lines for path in SOURCES
             if (lines := _text_calls_without_encoding(ast.parse(path.read_text(encoding="utf-8"))))}
    assert not found, f"text files opened without encoding= (pass encoding=\"utf-8\"), file: lines: {found}"
