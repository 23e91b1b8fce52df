"""Text files a person writes (a cohort's or a training run's manifest, a training configuration): read as UTF-8, with
or without the byte-order mark that Excel's "CSV UTF-8" and Windows Notepad write, or refused naming where they are
not UTF-8."""

from __future__ import annotations

import codecs
from pathlib import Path

from .errors import SpineSegmentationError

#: Why a CSV file is not UTF-8, and how to save it so, for :func:`read_utf8_text`'s message.
CSV_ADVICE = ("spreadsheets often save CSV as Latin-1/Windows-1252",
              "save it as UTF-8 CSV (Excel: Save As 'CSV UTF-8 (Comma delimited)')")
#: The same for a JSON file written in a text editor.
JSON_ADVICE = ("a text editor may save in the computer's own encoding, e.g. Windows-1252",
               "save it as UTF-8 (the editor's encoding setting)")


def read_utf8_text(path: Path, what: str, advice: tuple[str, str]) -> str:
    """The text of the file ``path``, decoded as UTF-8 (a byte-order mark dropped; line ends kept as written).

    Args:
        path: the file.
        what: what the file is, to start the message ("manifest", "training configuration").
        advice: why such a file may not be UTF-8 and how to save it so (:data:`CSV_ADVICE`, :data:`JSON_ADVICE`).

    Raises:
        SpineSegmentationError: the file is not UTF-8; the message names the line and the first byte that is not.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = exc.start + (len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0)
        line = data[:start].count(b"\n") + 1
        why, fix = advice
        raise SpineSegmentationError(
            f"{what} {path} is not UTF-8 text (line {line}: byte 0x{data[start]:02x}; {why}); {fix} and run again"
        ) from exc
