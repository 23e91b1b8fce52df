"""The cohort summary of ``spineseg batch``: ``summary.csv`` and the QC sheet ``cohort_qc.html``.

``summary.csv`` has one row per vertebra per case (a case without vertebrae, failed or without a spine, has one
row with the vertebra columns empty), sorted by case id, vertebrae cranio-caudal:

    case_id, status, error, warnings, seconds, resumed, model, image, series_uid, reference,
    level, label, complete, p_label, p_complete, volume_mm3, centroid_r_mm, centroid_a_mm, centroid_s_mm

(``status``: done, no_spine or failed; ``error``: the failure, or why no spine was found; ``warnings``: the run's
warnings (``vertebrae.json``), joined by :data:`WARNING_SEPARATOR`; ``seconds``: the case's run time when it was
run, kept when resumed; ``model``: the model's name and version, as in ``vertebrae.json``, empty for a case that
failed before the model was known; centroids in RAS millimetres as in ``vertebrae.json``.)

Both files are written to a temporary file beside them and renamed over the old one when complete
(:func:`write_text_atomically`), so a kill or a full disk leaves the previous file, never a partial one.

``cohort_qc.html`` is one small page (no scripts, no external files) with one tile per case: the case's ``qc.png``
thumbnail (linked, relative path), its levels (incomplete ones marked ``*``) and why it is flagged. Flagged cases
come first, in this order: failed, no spine, warning (the run warned: a split vertebra, a column that ends above
more CT without the sacrum, no landmark fixing the levels, ...; the tile lists the warnings), low confidence (a
vertebra with ``p_label`` below :data:`LOW_P_LABEL`), unusual count (a level missing inside the column, or a
transitional T13/L6).
"""

from __future__ import annotations

import csv
import html
import io
import os
from pathlib import Path
from typing import Sequence

from ..anatomy import L6, SACRUM, T13, column_position
from .case_run import temporary_path

SUMMARY_FILE = "summary.csv"
QC_SHEET_FILE = "cohort_qc.html"

#: Below this the labelling itself gives the level less than even odds (p_label is the probability of the final
#: label under the regressed value, seed 002 section 3.4), so a person should look.
LOW_P_LABEL = 0.5

CASE_COLUMNS = ("case_id", "status", "error", "warnings", "seconds", "resumed", "model", "image", "series_uid",
                "reference")
#: Joins a case's warnings in its ``warnings`` column (a warning's text has none).
WARNING_SEPARATOR = " | "
VERTEBRA_COLUMNS = ("level", "label", "complete", "p_label", "p_complete", "volume_mm3",
                    "centroid_r_mm", "centroid_a_mm", "centroid_s_mm")
SUMMARY_COLUMNS = CASE_COLUMNS + VERTEBRA_COLUMNS

#: Flags, most urgent first (the QC sheet's order).
FLAGS = ("failed", "no spine", "warning", "low confidence", "unusual count")

__all__ = ["FLAGS", "LOW_P_LABEL", "QC_SHEET_FILE", "SUMMARY_COLUMNS", "SUMMARY_FILE", "WARNING_SEPARATOR",
           "case_flags", "qc_sheet_text", "summary_rows", "summary_text", "write_qc_sheet", "write_summary",
           "write_text_atomically"]


def summary_rows(records: Sequence[dict]) -> list[dict]:
    """The rows of ``summary.csv`` (dicts keyed by :data:`SUMMARY_COLUMNS`, values as written)."""
    rows = []
    for record in sorted(records, key=lambda r: r["case_id"]):
        case = {key: record.get(key) for key in CASE_COLUMNS}
        case.update(seconds=f"{record.get('seconds', 0.0):.2f}", resumed=str(bool(record.get("resumed"))).lower(),
                    warnings=WARNING_SEPARATOR.join(record.get("warnings") or []),
                    series_uid="" if record.get("series_uid") is None else record["series_uid"],
                    model=_model_name((record.get("fingerprint") or {}).get("model")))
        case = {key: ("" if value is None else value) for key, value in case.items()}
        if not record.get("vertebrae"):
            rows.append({**case, **{key: "" for key in VERTEBRA_COLUMNS}})
        for v in record.get("vertebrae", []):
            r, a, s = v["centroid_ras_mm"]
            rows.append({**case, "level": v["name"], "label": v["label"], "complete": str(v["complete"]).lower(),
                         "p_label": f"{v['p_label']:.4f}", "p_complete": f"{v['p_complete']:.4f}",
                         "volume_mm3": f"{v['volume_mm3']:.1f}", "centroid_r_mm": f"{r:.2f}",
                         "centroid_a_mm": f"{a:.2f}", "centroid_s_mm": f"{s:.2f}"})
    return rows


def _model_name(model: dict | None) -> str:
    """``"<name> <version>"`` of a case record's model fingerprint, ``""`` without one."""
    return " ".join(str(model[key]) for key in ("name", "version") if model.get(key)) if model else ""


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder, renamed over ``path`` when
    complete: ``path`` is the old file or the new one, never a partial one. Returns ``path``.

    Raises:
        OSError: the file cannot be written (disk full, no permission); ``path`` is then unchanged and the
            temporary file removed.
    """
    path = Path(path)
    temporary = temporary_path(path.parent, "new", path.name)
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
    return path


def summary_text(records: Sequence[dict]) -> str:
    """The text of ``summary.csv`` (see the module docstring)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(summary_rows(records))
    return text.getvalue()


def write_summary(records: Sequence[dict], path: Path) -> Path:
    """Write ``summary.csv`` (see the module docstring; atomically, :func:`write_text_atomically`); returns its
    path."""
    return write_text_atomically(path, summary_text(records))


def case_flags(record: dict) -> list[str]:
    """The :data:`FLAGS` that apply to a case record (empty for an unremarkable case)."""
    if record["status"] == "failed":
        return ["failed"]
    if record["status"] == "no_spine":
        return ["no spine"]
    flags = ["warning"] if record.get("warnings") else []
    vertebrae = record["vertebrae"]
    if any(v["p_label"] < LOW_P_LABEL for v in vertebrae):
        flags.append("low confidence")
    positions = sorted(column_position(v["label"]) for v in vertebrae if v["label"] != SACRUM)
    if any(v["label"] in (T13, L6) for v in vertebrae) or any(b - a > 1 for a, b in zip(positions, positions[1:])):
        flags.append("unusual count")
    return flags


def _tile(record: dict, output_root: Path) -> str:
    flags = case_flags(record)
    case_id = html.escape(record["case_id"])
    qc = output_root / record["case_id"] / "qc.png"
    picture = (f'<a href="{case_id}/qc.png"><img src="{case_id}/qc.png" alt="QC picture of {case_id}"></a>'
               if record["status"] != "failed" and qc.is_file() else '<div class="none">no picture</div>')
    levels = " ".join(v["name"] + ("" if v["complete"] else "*") for v in record["vertebrae"]) or "none"
    note = html.escape(record.get("error") or "")
    warnings = "".join(f'<p class="error">warning: {html.escape(w)}</p>' for w in record.get("warnings") or [])
    return (f'<div class="case{" flagged" if flags else ""}">{picture}<h3>{case_id}</h3>'
            f'<p>{html.escape(", ".join(flags) or "ok")}</p><p>levels: {html.escape(levels)}</p>'
            + (f'<p class="error">{note}</p>' if note else "") + warnings + "</div>")


def _order(record: dict) -> tuple:
    flags = case_flags(record)
    return (min((FLAGS.index(f) for f in flags), default=len(FLAGS)), record["case_id"])


def write_qc_sheet(records: Sequence[dict], output_root: Path) -> Path:
    """Write ``output_root/cohort_qc.html`` (see the module docstring; atomically) and return its path."""
    return write_text_atomically(Path(output_root) / QC_SHEET_FILE, qc_sheet_text(records, output_root))


def qc_sheet_text(records: Sequence[dict], output_root: Path) -> str:
    """The text of ``output_root/cohort_qc.html`` (see the module docstring; the tiles link each case's ``qc.png``
    where ``output_root/<case_id>/qc.png`` exists)."""
    ordered = sorted(records, key=_order)
    flagged = sum(1 for r in records if case_flags(r))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>spineseg cohort QC</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.case {{ display: inline-block; vertical-align: top; width: 260px; margin: 6px; padding: 6px; border: 1px solid #ccc; }}
.flagged {{ border: 3px solid #c33; }}
.case img {{ width: 250px; }} .none {{ height: 120px; background: #eee; }} .error {{ color: #c33; font-size: small; }}
h3 {{ margin: 4px 0; font-size: 1em; }} p {{ margin: 2px 0; }}
</style></head><body>
<h1>spineseg cohort QC</h1>
<p>{len(records)} cases, {flagged} flagged (first: {", ".join(FLAGS)}). Levels marked * are incomplete.</p>
{"".join(_tile(r, output_root) for r in ordered)}
</body></html>
"""
    return page
