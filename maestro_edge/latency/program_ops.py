"""ESTIMATED latency of every op a model runs besides its LoD layers, counted from its exported program.

The estimated table prices the LoD layers (latency/estimated.py); this prices the rest: attention matmuls,
softmax, norms, activations, embeddings, pools, resizes, reductions, residual adds, concats, layout copies,
depthwise convs (LoD leaves them dense). The model is exported once (``torch.export``, batch as given) and
each graph node is priced from the fake-tensor shapes in ``node.meta["val"]``:

- "gemm" (linear, matmul/bmm, convs outside LoD layers, attention): as :class:`OpSpec` GEMMs through
  estimate.py, so they share the calibrated compute curves (a depthwise conv gets the depthwise curve);
- "memory" (everything else that moves data): ``per_op_overhead_ms + bytes / sustained bandwidth``.

Every figure is an ESTIMATE. Known biases: memory ops are assumed bandwidth-bound (transcendental ops such
as erf-GELU, and tensors that stay in cache, are not modelled); fusion follows XNNPACK's passes (BatchNorm
into a conv/linear, ReLU/hardtanh into conv/linear/add/sub/mul), which onnxruntime roughly matches; no
constant folding (ExecuTorch does none by default; onnxruntime does, so it may run a few tiny ops fewer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx

from maestro_edge.latency.estimate import op_time_terms, per_op_overhead_ms, sustained_memory_gbs
from maestro_edge.latency.ops import OpSpec

@dataclass(frozen=True)
class ProgramOp:
    """One priced node of the exported program (an ESTIMATE)."""

    node: str
    target: str                                     # aten overload packet, e.g. "aten.softmax"
    kind: str                                       # "gemm" or "memory"
    module: str = ""                                # innermost module path it ran in
    gemms: tuple[tuple[OpSpec, int], ...] = ()      # (GEMM, how many times it runs: batch x heads)
    memory_bytes: int = 0                           # bytes streamed outside the GEMMs
    classified: bool = True                         # False: not in COSTS, priced as memory-bound by default

    @property
    def macs(self) -> int:
        return sum(op.macs() * times for op, times in self.gemms)

    @property
    def bytes(self) -> int:
        return self.memory_bytes + sum((op.weight_bytes() + op.activation_bytes()) * times for op, times in self.gemms)

    def ms(self, profile) -> float:
        """ESTIMATED time on ``profile``: each GEMM one op (one fixed cost however many times it runs)."""
        gbs, total = sustained_memory_gbs(profile), 0.0
        for op, times in self.gemms:
            total += op_time_terms(op, profile).ms(gbs, times)
        if self.memory_bytes or not self.gemms:
            total += per_op_overhead_ms(profile) + self.memory_bytes / (gbs * 1e6)
        return total


@dataclass
class OtherOpsEstimate:
    """ESTIMATED total of the non-LoD ops, with the ms per aten op for provenance."""

    total_ms: float
    by_target: dict[str, float]
    unclassified: list[str]                         # aten ops priced by the memory-bound default
    ops: list[ProgramOp] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- shapes
def _val(x):
    return x.meta.get("val") if isinstance(x, fx.Node) else None


def _nbytes(v) -> int:
    if isinstance(v, torch.Tensor):
        return int(v.numel()) * v.element_size()
    return sum(_nbytes(t) for t in v) if isinstance(v, (tuple, list)) else 0


def _packet(node: fx.Node) -> str:
    """"aten.relu" for aten.relu.default and for the in-place aten.relu_ (the export keeps in-place ops)."""
    if not isinstance(node.target, torch._ops.OpOverload):
        return str(node.target)
    name = str(node.target.overloadpacket)
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


def _args(node: fx.Node) -> dict:
    """The node's arguments by schema name, defaults filled in."""
    schema = node.target._schema.arguments
    bound = {a.name: a.default_value for a in schema if a.has_default_value()}
    bound.update(zip((a.name for a in schema), node.args))
    return {**bound, **node.kwargs}


# ---------------------------------------------------------------------------------------- costs
# A cost function returns None (the op is free), memory bytes (int), or (gemms, memory bytes).
def _free(node):
    return None


def _stream(node):
    """Read every input once, write the output once."""
    return sum(_nbytes(_val(n)) for n in node.all_input_nodes) + _nbytes(_val(node))


def _gather(node):
    """Embedding / index: the rows gathered (read and written) plus the indices, never the whole table."""
    return 2 * _nbytes(_val(node)) + sum(_nbytes(_val(n)) for n in node.all_input_nodes[1:])


def _order(node, ndim: int) -> list[int]:
    a = _args(node)
    if "dims" in a:                                             # permute
        return [d % ndim for d in a["dims"]]
    order = list(range(ndim))
    if "dim0" not in a:                                         # t
        return order[::-1]
    i, j = a["dim0"] % ndim, a["dim1"] % ndim
    order[i], order[j] = order[j], order[i]
    return order


def _permute(node):
    """ExecuTorch runs a permute as a transpose kernel: a copy, unless it only moves size-1 dims."""
    src = _val(node.args[0])
    kept = lambda dims: [d for d in dims if src.shape[d] != 1]      # noqa: E731
    return 2 * _nbytes(_val(node)) if kept(_order(node, src.dim())) != kept(range(src.dim())) else None


def _layout(node):
    """expand/slice/select run as *_copy kernels and .to(dtype) converts: free only when nothing changes."""
    src, out = _val(node.args[0]), _val(node)
    if out.dtype != src.dtype:
        return _nbytes(src) + _nbytes(out)
    return 2 * _nbytes(out) if out.numel() != src.numel() else None


BATCH_NORMS = {"aten.batch_norm", "aten._native_batch_norm_legit_no_training", "aten.native_batch_norm"}
CONV_LIKE = {"aten.conv1d", "aten.conv2d", "aten.convolution", "aten.linear"}
ACTIVATION_HOSTS = CONV_LIKE | {"aten.add", "aten.sub", "aten.mul"}


def _fuses(node) -> bool:
    """True when XNNPACK folds this BatchNorm (into a conv/linear) or ReLU/hardtanh (into its producer)."""
    src = node.args[0]
    if not isinstance(src, fx.Node) or src.op != "call_function" or len(src.users) != 1:
        return False
    if _packet(node) in BATCH_NORMS:
        return _packet(src) in CONV_LIKE
    return _packet(src) in ACTIVATION_HOSTS or (_packet(src) in BATCH_NORMS and _fuses(src))


def _fusable(node):
    return None if _fuses(node) else _stream(node)


MATRIX_OPERANDS = {"aten.mm": ("self", "mat2"), "aten.bmm": ("self", "mat2"), "aten.matmul": ("self", "other"),
                   "aten.addmm": ("mat1", "mat2"), "aten.baddbmm": ("batch1", "batch2")}


def _matmul(node):
    """(M x K) @ (K x N), repeated over the output's batch dimensions (a bmm: one GEMM per batch)."""
    names = MATRIX_OPERANDS[_packet(node)]
    a, b = (_val(_args(node)[name]) for name in names)
    m, k, n = (int(a.shape[-2]) if a.dim() > 1 else 1), int(a.shape[-1]), (int(b.shape[-1]) if b.dim() > 1 else 1)
    spec = OpSpec.linear(k, n, tokens=m, bias=_packet(node).startswith("aten.add"))
    return ((spec, int(_val(node).numel()) // (m * n)),), 0


def _linear(node):
    a = _args(node)
    x, (n, k) = _val(a["input"]), _val(a["weight"]).shape
    return ((OpSpec.linear(int(k), int(n), tokens=int(x.numel()) // int(k), bias=a["bias"] is not None), 1),), 0


def _hw(t, spatial: int):
    return tuple(int(s) for s in t.shape[-spatial:]) if spatial == 2 else (1, int(t.shape[-1]))


def _conv(node):
    """A conv outside any LoD layer (e.g. depthwise); padding is solved from the real output size."""
    a = _args(node)
    x, w, out = _val(a["input"]), _val(a["weight"]), _val(node)
    spatial = w.dim() - 2
    (h, wd), (kh, kw), (oh, ow) = _hw(x, spatial), _hw(w, spatial), _hw(out, spatial)
    stride = list(a["stride"]) * (2 // len(a["stride"]))
    stride = tuple(stride) if spatial == 2 else (1, stride[0])
    in_hw, pad = [], []
    for size, k, o, s in ((h, kh, oh, stride[0]), (wd, kw, ow, stride[1])):
        p = max(0, -(-((o - 1) * s + k - size) // 2))
        ok = (size + 2 * p - k) // s + 1 == o                   # else (dilation): an input that gives o
        in_hw.append(size if ok else (o - 1) * s + k)
        pad.append(p if ok else 0)
    cin = int(x.shape[-spatial - 1])
    spec = OpSpec.conv2d(cin, int(w.shape[0]), (kh, kw), tuple(in_hw), stride=stride, padding=tuple(pad),
                         groups=cin // int(w.shape[1]), bias=a["bias"] is not None)
    return ((spec, int(x.shape[0]) if x.dim() == w.dim() else 1),), 0


def _attention(node):
    """softmax(q k^T) v: two batched GEMMs plus the score matrix written, softmaxed and read back."""
    q, k, v = (_val(node.args[i]) for i in range(3))
    (lq, e), s, ev = q.shape[-2:], k.shape[-2], v.shape[-1]
    batch = int(q.numel()) // int(lq * e)
    scores = batch * int(lq * s) * q.element_size()
    mask = _args(node).get("attn_mask")
    return ((OpSpec.linear(int(e), int(s), tokens=int(lq), bias=False), batch),
            (OpSpec.linear(int(s), int(ev), tokens=int(lq), bias=False), batch)), 2 * scores + _nbytes(_val(mask))


def _register(cost, *names):
    return {f"aten.{name}": cost for name in names}


# aten overload packet -> cost function. Not listed: priced by _stream and reported as unclassified.
COSTS = {
    **_register(_free, "view", "_unsafe_view", "reshape", "flatten", "unflatten", "unsqueeze", "squeeze", "alias",
                "detach", "dropout", "feature_dropout", "contiguous", "clone", "lift_fresh_copy", "sym_size",
                "sym_numel", "sym_stride", "_assert_tensor_metadata", "_assert_async", "_assert_scalar",
                "sym_constrain_range", "sym_constrain_range_for_size"),
    # A clone/contiguous after a permute would charge its copy twice: the copy is charged at the permute.
    **_register(_permute, "permute", "transpose", "t"),
    **_register(_layout, "expand", "slice", "select", "narrow", "to", "_to_copy"),
    **_register(_fusable, "relu", "hardtanh", "relu6", "batch_norm", "_native_batch_norm_legit_no_training",
                "native_batch_norm"),
    **_register(_gather, "embedding", "index", "index_select", "gather"),
    **_register(_matmul, "mm", "bmm", "matmul", "addmm", "baddbmm"),
    **_register(_linear, "linear"),
    **_register(_conv, "conv1d", "conv2d"),      # aten.convolution (maybe transposed): unclassified
    **_register(_attention, "scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu"),
    **_register(_stream, "add", "sub", "mul", "div", "rsub", "neg", "pow", "sqrt", "rsqrt", "exp", "log", "abs",
                "erf", "tanh", "sigmoid", "silu", "hardswish", "hardsigmoid", "gelu", "leaky_relu", "clamp",
                "clamp_min", "clamp_max", "where", "masked_fill", "eq", "ne", "ge", "gt", "le", "lt", "__and__",
                "__or__", "logical_not", "logical_and", "logical_or", "bitwise_not", "softmax", "_softmax",
                "log_softmax", "layer_norm", "native_layer_norm", "group_norm", "rms_norm", "avg_pool2d",
                "max_pool2d", "max_pool2d_with_indices", "adaptive_avg_pool2d", "adaptive_max_pool2d",
                "avg_pool1d", "max_pool1d", "upsample_nearest2d", "upsample_bilinear2d", "mean", "sum", "amax",
                "amin", "max", "min", "var", "var_mean", "cat", "stack", "pad", "constant_pad_nd", "repeat",
                "cumsum", "arange", "zeros", "ones", "full", "new_ones", "new_zeros", "zeros_like",
                "ones_like", "full_like", "scalar_tensor", "copy"),
}


# ---------------------------------------------------------------------------------------- walk
def _module_paths(node: fx.Node) -> list[str]:
    return [path.split("@")[0] for path, _ in (node.meta.get("nn_module_stack") or {}).values()]


def other_ops(model: torch.nn.Module, example_inputs, skip: set[str]) -> list[ProgramOp]:
    """The priced ops of ``model`` on ``example_inputs`` (batch as given), outside the modules in ``skip``."""
    was_training = model.training
    try:
        program = torch.export.export(model.eval(), tuple(example_inputs), strict=False)
    finally:
        model.train(was_training)
    ops = []
    for node in program.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue                                            # getitem, int arithmetic on sizes
        paths = _module_paths(node)
        if any(p in skip for p in paths):
            continue
        target = _packet(node)
        cost = COSTS.get(target, _stream)(node)
        if cost is None:
            continue
        gemms, memory = cost if isinstance(cost, tuple) else ((), cost)
        ops.append(ProgramOp(node.name, target, "gemm" if gemms else "memory", paths[-1] if paths else "",
                             gemms, memory, classified=target in COSTS))
    return ops


def estimate_other_ops_ms(model, example_inputs, profile, skip: set[str]) -> OtherOpsEstimate:
    """ESTIMATED time (ms) of the ops outside the LoD layers on ``profile``'s device (see the module docstring)."""
    ops = other_ops(model, example_inputs, skip)
    by_target: dict[str, float] = {}
    for op in ops:
        by_target[op.target] = by_target.get(op.target, 0.0) + op.ms(profile)
    unclassified = sorted({op.target for op in ops if not op.classified})
    return OtherOpsEstimate(sum(by_target.values()), by_target, unclassified, ops)
