"""Networks: the iterative instance-segmentation FCN (seed 002) and the 2D attention network (seed 001)."""

from .attention_net import AttentionNet, AttentionNetConfig
from .iterative_fcn import IterativeFCN, IterativeFCNConfig, IterativeFCNOutput

__all__ = ["AttentionNet", "AttentionNetConfig", "IterativeFCN", "IterativeFCNConfig", "IterativeFCNOutput"]
