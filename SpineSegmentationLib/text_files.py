"""Text files a person writes (a cohort's or a training run's manifest, a training configuration, a VerSe centroid
file): read as UTF-8, with or without the byte-order mark that Excel's "CSV UTF-8" and Notepad's "UTF-8 with BOM"
write, or refused naming where they are not UTF-8; a CSV file's header read as meant."""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path
from typing import Optional, Sequence

from .errors import SpineSegmentationError

#: How to save a CSV file from Excel as UTF-8 with commas.
EXCEL_CSV = "Excel: Save As 'CSV UTF-8 (Comma delimited)'"
#: Why a CSV file is not UTF-8, and how to save it so, for :func:`read_utf8_text`'s message.
CSV_ADVICE = ("spreadsheets often save CSV as Latin-1/Windows-1252", f"save it as UTF-8 CSV ({EXCEL_CSV})")
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


def csv_rows(path: Path, what: str) -> csv.DictReader:
    """The rows of the UTF-8 CSV file ``path`` (:func:`read_utf8_text`), its column names without surrounding spaces
    and in lower case ("Case_ID, Image": ``case_id``, ``image``); values as written.

    Raises:
        SpineSegmentationError: the file is not UTF-8 (the message starts with ``what``).
    """
    reader = csv.DictReader(io.StringIO(read_utf8_text(path, what, CSV_ADVICE), newline=""))
    if reader.fieldnames:
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
    return reader


def separator_hint(columns: Optional[Sequence[str]]) -> str:
    """For a message refusing a CSV header ``columns``: where they hold semicolons or tabs (a spreadsheet that saved
    with the list separator of its locale), ": its columns are separated by ..., not commas; save it as CSV with
    commas (...)"; else ""."""
    separated = next((name for mark, name in ((";", "semicolons"), ("\t", "tabs"))
                      if any(mark in column for column in columns or [])), None)
    return f": its columns are separated by {separated}, not commas; save it as CSV with commas ({EXCEL_CSV})" \
        if separated else ""
