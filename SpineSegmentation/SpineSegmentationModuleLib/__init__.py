"""Helpers of the 3D Slicer module ``SpineSegmentation``, one concern per file.

The module is an adapter (STYLE.md): Slicer nodes -> a file -> the ``SpineSegmentationLib`` command line in a
separate process -> an output folder -> Slicer nodes. No algorithm lives here.

==========================  ==================================================================  =================
file                        concern                                                             needs
==========================  ==================================================================  =================
``command.py``              the CLI command line, progress JSON lines, where the library is     Python only
``runner.py``               the process that runs the CLI: start, stream lines, kill            Python only
``output_folder.py``        reading and validating an output folder (vertebrae.json + labels)   Python only
``mrml_import.py``          output folder -> segmentation, centroid markups, results table      MRML (slicer-core)
``logic.py``                one run (export input, run, cancel, import) and the batch API       MRML (slicer-core)
``correction.py``           edits tracking, click/re-run, renumbering, completeness, undo       MRML (slicer-core)
``voxel_digests.py``        per-segment voxel digests (is it the same voxels?), kept by chunk   MRML (slicer-core)
``dependencies.py``         the Python packages the CLI needs; install after the user agrees    Slicer app (lazily)
==========================  ==================================================================  =================

Everything but ``dependencies.py`` imports with the PyPI ``slicer-core`` package (MRML classes, no
application), so the logic is tested outside Slicer (``Testing/Python/test_slicer_logic_mrml.py``).
"""
