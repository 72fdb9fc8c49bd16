"""Conv and linear ops of well-known ImageNet networks (224x224 input, 1000 classes, batch 1).

Written out by hand (no torchvision) so the estimator can be checked against published whole-model
latencies. BatchNorm is folded into each conv's bias, as exporters do; ReLUs fuse into the convs.
Pools and residual adds are not listed: they are not conv/linear ops and move a few MB at most.
"""

from __future__ import annotations

from maestro_edge.latency.ops import OpSpec


def mobilenet_v2(width: float = 1.0, num_classes: int = 1000) -> list[OpSpec]:
    """MobileNetV2 (Sandler et al. 2018), ~300 M MACs at width 1.0."""
    # (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def channels(c: float) -> int:  # torchvision's _make_divisible(c, 8)
        rounded = max(8, int(c + 4) // 8 * 8)
        return rounded + 8 if rounded < 0.9 * c else rounded

    ops, hw = [], 112
    c_in = channels(32 * width)
    ops.append(OpSpec.conv2d(3, c_in, 3, 224, stride=2, name="features.0"))
    index = 1
    for t, c, n, s in settings:
        c_out = channels(c * width)
        for i in range(n):
            stride, hidden, prefix = (s if i == 0 else 1), c_in * t, f"features.{index}"
            if t != 1:
                ops.append(OpSpec.conv2d(c_in, hidden, 1, hw, name=f"{prefix}.expand"))
            ops.append(OpSpec.conv2d(hidden, hidden, 3, hw, stride=stride, groups=hidden, name=f"{prefix}.depthwise"))
            hw //= stride
            ops.append(OpSpec.conv2d(hidden, c_out, 1, hw, name=f"{prefix}.project"))
            c_in, index = c_out, index + 1
    last = channels(1280 * max(1.0, width))
    ops.append(OpSpec.conv2d(c_in, last, 1, hw, name=f"features.{index}"))
    ops.append(OpSpec.linear(last, num_classes, name="classifier"))
    return ops


def _resnet(block_counts: list[int], bottleneck: bool, num_classes: int) -> list[OpSpec]:
    ops = [OpSpec.conv2d(3, 64, 7, 224, stride=2, name="conv1")]
    hw, c_in, expansion = 56, 64, (4 if bottleneck else 1)  # a 3x3/2 max-pool follows conv1: 112 → 56
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), block_counts), start=1):
        for b in range(count):
            stride, p = (2 if stage > 1 and b == 0 else 1), f"layer{stage}.{b}"
            c_out = width * expansion
            if bottleneck:  # torchvision v1.5: the stride sits on the 3x3 conv
                ops.append(OpSpec.conv2d(c_in, width, 1, hw, name=f"{p}.conv1"))
                ops.append(OpSpec.conv2d(width, width, 3, hw, stride=stride, name=f"{p}.conv2"))
                ops.append(OpSpec.conv2d(width, c_out, 1, hw // stride, name=f"{p}.conv3"))
            else:
                ops.append(OpSpec.conv2d(c_in, width, 3, hw, stride=stride, name=f"{p}.conv1"))
                ops.append(OpSpec.conv2d(width, width, 3, hw // stride, name=f"{p}.conv2"))
            if stride != 1 or c_in != c_out:
                ops.append(OpSpec.conv2d(c_in, c_out, 1, hw, stride=stride, padding=0, name=f"{p}.downsample"))
            hw, c_in = hw // stride, c_out
    ops.append(OpSpec.linear(c_in, num_classes, name="fc"))
    return ops


def resnet18(num_classes: int = 1000) -> list[OpSpec]:
    """ResNet-18 (He et al. 2016), ~1.82 G MACs."""
    return _resnet([2, 2, 2, 2], bottleneck=False, num_classes=num_classes)


def resnet50(num_classes: int = 1000) -> list[OpSpec]:
    """ResNet-50 (torchvision v1.5 layout), ~4.1 G MACs."""
    return _resnet([3, 4, 6, 3], bottleneck=True, num_classes=num_classes)


REFERENCE_NETS = {"mobilenet_v2": mobilenet_v2, "resnet18": resnet18, "resnet50": resnet50}
