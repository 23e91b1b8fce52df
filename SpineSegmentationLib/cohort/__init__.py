"""Cohorts: ``spineseg batch`` over many CTs, on this machine or on a Ray cluster.

- :mod:`.cases`: the cases of the inputs (folders, manifest CSV, DICOM tree by SeriesInstanceUID) and the skipped
  series with their reasons;
- :mod:`.case_run`: the per-case function (temporary folder + rename, resume by checksums, failures recorded);
- :mod:`.engines`: the local engine and the Ray engine (optional extra ``.[cohort]``) that run it;
- :mod:`.report`: ``summary.csv`` and the QC sheet ``cohort_qc.html``;
- :mod:`.batch`: :func:`run_batch` and the ``spineseg batch`` command.

Example::

    from SpineSegmentationLib.cohort import CaseOptions, run_batch
    result = run_batch(["cts/"], "cohort_out", CaseOptions(device="cpu"))
    print(result.failed, result.summary)
"""

from .batch import BatchResult, run_batch
from .case_run import CaseOptions

__all__ = ["BatchResult", "CaseOptions", "run_batch"]
