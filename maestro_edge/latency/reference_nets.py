"""Conv and linear ops of well-known ImageNet networks (224x224 input, 1000 classes, batch 1).

Written out by hand (no torchvision) so the estimator can be checked against published whole-model
latencies. BatchNorm is folded into each conv's bias, as exporters do; ReLUs fuse into the convs.
Pools, residual adds, activations that do not fuse (h-swish, h-sigmoid) and the squeeze-and-excitation
channel multiply are not listed: they are not conv/linear ops. Each moves at most one activation tensor,
so leaving them out biases estimates low, most for MobileNetV3 (h-swish and SE on most blocks).
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


def mobilenet_v1(num_classes: int = 1000) -> list[OpSpec]:
    """MobileNet v1 1.0 (Howard et al. 2017, Table 1), ~569 M MACs."""
    # (output channels, stride) of each depthwise-separable block after the 3x3/2 stem conv.
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    ops, hw, c_in = [OpSpec.conv2d(3, 32, 3, 224, stride=2, name="conv0")], 112, 32
    for i, (c_out, stride) in enumerate(blocks, start=1):
        ops.append(OpSpec.conv2d(c_in, c_in, 3, hw, stride=stride, groups=c_in, name=f"block{i}.depthwise"))
        hw //= stride
        ops.append(OpSpec.conv2d(c_in, c_out, 1, hw, name=f"block{i}.pointwise"))
        c_in = c_out
    ops.append(OpSpec.linear(c_in, num_classes, name="fc"))
    return ops


def _make_divisible(c: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of 8, never more than 10% down (the MobileNet papers' code)."""
    rounded = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * c else rounded


def _mobilenet_v3(settings, stem: int, last: int, head: int, num_classes: int) -> list[OpSpec]:
    ops, hw, c_in = [OpSpec.conv2d(3, stem, 3, 224, stride=2, name="features.0")], 112, stem
    for index, (kernel, expanded, c_out, se, stride) in enumerate(settings, start=1):
        prefix = f"features.{index}"
        if expanded != c_in:
            ops.append(OpSpec.conv2d(c_in, expanded, 1, hw, name=f"{prefix}.expand"))
        ops.append(OpSpec.conv2d(expanded, expanded, kernel, hw, stride=stride, groups=expanded, name=f"{prefix}.depthwise"))
        hw //= stride
        if se:  # squeeze-and-excitation: global pool, then two 1x1 convs on a 1x1 map
            squeeze = _make_divisible(expanded // 4)
            ops.append(OpSpec.conv2d(expanded, squeeze, 1, 1, name=f"{prefix}.se.fc1"))
            ops.append(OpSpec.conv2d(squeeze, expanded, 1, 1, name=f"{prefix}.se.fc2"))
        ops.append(OpSpec.conv2d(expanded, c_out, 1, hw, name=f"{prefix}.project"))
        c_in = c_out
    ops.append(OpSpec.conv2d(c_in, last, 1, hw, name=f"features.{len(settings) + 1}"))
    ops.append(OpSpec.linear(last, head, name="classifier.0"))  # after the global pool
    ops.append(OpSpec.linear(head, num_classes, name="classifier.3"))
    return ops


def mobilenet_v3_large(num_classes: int = 1000) -> list[OpSpec]:
    """MobileNetV3-Large 1.0 (Howard et al. 2019, Table 1), ~217 M MACs.

    Omitted (not conv/linear): h-swish / h-sigmoid, the SE channel multiply, residual adds, pools.
    """
    # (kernel, expanded channels, output channels, squeeze-and-excite, stride), Table 1 of the paper.
    settings = [(3, 16, 16, False, 1), (3, 64, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
                (5, 120, 40, True, 1), (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1),
                (3, 184, 80, False, 1), (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1),
                (5, 672, 160, True, 2), (5, 960, 160, True, 1), (5, 960, 160, True, 1)]
    return _mobilenet_v3(settings, stem=16, last=960, head=1280, num_classes=num_classes)


def mobilenet_v3_small(num_classes: int = 1000) -> list[OpSpec]:
    """MobileNetV3-Small 1.0 (Howard et al. 2019, Table 2), ~56 M MACs.

    Omitted (not conv/linear): h-swish / h-sigmoid, the SE channel multiply, residual adds, pools.
    """
    settings = [(3, 16, 16, True, 2), (3, 72, 24, False, 2), (3, 88, 24, False, 1), (5, 96, 40, True, 2),
                (5, 240, 40, True, 1), (5, 240, 40, True, 1), (5, 120, 48, True, 1), (5, 144, 48, True, 1),
                (5, 288, 96, True, 2), (5, 576, 96, True, 1), (5, 576, 96, True, 1)]
    return _mobilenet_v3(settings, stem=16, last=576, head=1024, num_classes=num_classes)


def vgg16(num_classes: int = 1000) -> list[OpSpec]:
    """VGG-16 (Simonyan & Zisserman 2015, configuration D), ~15.5 G MACs."""
    ops, hw, c_in = [], 224, 3
    for stage, (width, count) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)], start=1):
        for i in range(count):
            ops.append(OpSpec.conv2d(c_in, width, 3, hw, name=f"conv{stage}_{i + 1}"))
            c_in = width
        hw //= 2  # 2x2/2 max-pool
    ops.append(OpSpec.linear(512 * 7 * 7, 4096, name="fc6"))
    ops.append(OpSpec.linear(4096, 4096, name="fc7"))
    ops.append(OpSpec.linear(4096, num_classes, name="fc8"))
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


REFERENCE_NETS = {
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_large": mobilenet_v3_large,
    "mobilenet_v3_small": mobilenet_v3_small,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg16": vgg16,
}
