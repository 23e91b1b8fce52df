"""SpineSegmentationLib: iterative FCN vertebra segmentation, labelling and completeness for CT.

Pure-Python/torch library behind the 3D Slicer module ``SpineSegmentation``. It never imports
``slicer``, ``qt`` or ``vtk``.

The whole job is one call::

    from SpineSegmentationLib import segment_spine
    result = segment_spine("example_ct.nii.gz")
    for v in result.vertebrae:
        print(v.name, v.complete, v.p_label)

Methods: Lessmann et al. 2019, "Iterative fully convolutional neural networks for automatic vertebra
segmentation and identification" (Medical Image Analysis 53), and Sekuboyina et al. 2017,
"Attention-driven deep learning for pathological spine segmentation" (localization network).
"""

__version__ = "0.1.0"


def segment_spine(*args, **kwargs):
    """Run the whole pipeline; see :func:`SpineSegmentationLib.pipeline.segment_spine`."""
    from .pipeline import segment_spine as _segment_spine

    return _segment_spine(*args, **kwargs)
