"""Network output shapes and configuration checks (seed 002 Figure 1; seed 001 section 2.1)."""

import pytest
import torch

from SpineSegmentationLib.networks import AttentionNet, AttentionNetConfig, IterativeFCN, IterativeFCNConfig
from SpineSegmentationLib.networks.iterative_fcn import PAPER_CONFIG


def test_iterative_fcn_outputs_mask_label_and_completeness_of_the_right_shapes():
    net = IterativeFCN(IterativeFCNConfig(patch_size=32, filters=8, levels=4, recognition_filters=8)).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 2, 32, 32, 32))
    assert out.segmentation_logits.shape == (3, 1, 32, 32, 32)
    assert out.label.shape == (3,) and out.completeness_logits.shape == (3,)
    assert (out.label >= 0).all()  # ReLU label output (section 3.4)


def test_paper_configuration_is_available_and_has_the_papers_sizes():
    assert (PAPER_CONFIG.patch_size, PAPER_CONFIG.filters, PAPER_CONFIG.recognition_filters) == (128, 84, 48)
    net = IterativeFCN(PAPER_CONFIG)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    seg_path = [c for c in convs if c not in list(net.label_path.modules()) + list(net.completeness_path.modules())]
    # constant number of filters in the segmentation path, except the 2-channel input and 1-channel output
    assert {c.out_channels for c in seg_path[:-1]} == {84} and seg_path[-1].out_channels == 1
    assert seg_path[0].in_channels == 2
    assert {m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)} == {1}


def test_batch_norm_and_padding_keep_the_patch_size():
    net = IterativeFCN(IterativeFCNConfig(patch_size=24, filters=4, levels=3, recognition_filters=4)).eval()
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules())
    with torch.no_grad():
        assert net(torch.zeros(1, 2, 24, 24, 24)).segmentation_logits.shape[2:] == (24, 24, 24)


def test_invalid_configurations_and_inputs_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        IterativeFCNConfig(patch_size=50, levels=4)
    with pytest.raises(ValueError, match="unknown IterativeFCN"):
        IterativeFCNConfig.from_dict({"patch_size": 32, "width": 3})
    net = IterativeFCN(IterativeFCNConfig(patch_size=16, filters=2, levels=2, recognition_filters=2))
    with pytest.raises(ValueError, match=r"\(N, 2, D, H, W\)"):
        net(torch.zeros(1, 1, 16, 16, 16))


def test_attention_net_maps_16x16_blocks_to_fractions():
    net = AttentionNet(AttentionNetConfig(filters=4, pool_levels=4)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, 64, 48))
    assert out.shape == (2, 1, 4, 3)
    assert ((out >= 0) & (out <= 1)).all()
    with pytest.raises(ValueError, match="divisible by the block size 16"):
        net(torch.zeros(1, 1, 50, 48))


@pytest.mark.parametrize("make, message", [
    (lambda: IterativeFCNConfig(patch_size=0), r"IterativeFCNConfig.patch_size must be a whole number >= 1 \(.*got 0"),
    (lambda: IterativeFCNConfig(patch_size=-48), r"IterativeFCNConfig.patch_size must be a whole number >= 1 .*-48"),
    (lambda: IterativeFCNConfig(filters=0), r"IterativeFCNConfig.filters must be a whole number >= 1 .*got 0"),
    (lambda: IterativeFCNConfig(levels=0), r"IterativeFCNConfig.levels must be a whole number >= 2 .*got 0"),
    (lambda: IterativeFCNConfig(recognition_filters=-1), r"IterativeFCNConfig.recognition_filters .* >= 1 .*got -1"),
    (lambda: IterativeFCNConfig(recognition_levels=-1), r"IterativeFCNConfig.recognition_levels .* >= 0 .*got -1"),
    (lambda: IterativeFCNConfig(filters=4.5), r"IterativeFCNConfig.filters must be a whole number >= 1 .*got 4.5"),
    (lambda: AttentionNetConfig(filters=0), r"AttentionNetConfig.filters must be a whole number >= 1 .*got 0"),
    (lambda: AttentionNetConfig(filters=-2), r"AttentionNetConfig.filters must be a whole number >= 1 .*got -2"),
    (lambda: AttentionNetConfig(pool_levels=-1), r"AttentionNetConfig.pool_levels must be a whole number >= 0 .*-1"),
    (lambda: AttentionNetConfig.from_dict({"filters": True}), r"AttentionNetConfig.filters .*got True"),
])
def test_network_configurations_made_in_python_refuse_counts_out_of_range(make, message):
    """Made from Python (not a training configuration, whose ranges load_config checks), the configurations took 0 or
    negative filters, a patch of 0 voxels, negative pooling steps (an attention block of half a pixel) and fractions:
    each is refused naming the setting, the value and the range."""
    with pytest.raises(ValueError, match=message):
        make()
    # the smallest counts are networks that run
    fcn = IterativeFCN(IterativeFCNConfig(patch_size=2, filters=1, levels=2, recognition_filters=1,
                                          recognition_levels=0)).eval()
    attention = AttentionNet(AttentionNetConfig(filters=1, pool_levels=0)).eval()
    with torch.no_grad():
        assert fcn(torch.zeros(1, 2, 2, 2, 2)).segmentation_logits.shape == (1, 1, 2, 2, 2)
        assert attention(torch.zeros(1, 1, 3, 5)).shape == (1, 1, 3, 5)
