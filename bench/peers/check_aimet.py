"""Check that the AIMET spatial-SVD peer works here: both modes on TwoBranchNet(32), random weights.

    bash bench/peers/install_aimet.sh            # once: /opt/aimet-venv
    /opt/aimet-venv/bin/python bench/peers/check_aimet.py [--json out.json]

Auto mode: greedy selection to a 0.5 MAC ratio, scored by the negative MSE to the dense model's outputs on 64 random
inputs; manual mode: ratio 0.5 on every eligible conv. Each compressed model must run, match the input/output
shapes, and go through torch.export.export. Also: AIMET's greedy eval table saved to a file and reused for another
target (no per-layer evaluations). Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples" / "user_cnn"))
sys.path.insert(0, str(ROOT / "bench"))

import mynet  # noqa: E402
from peers.aimet_svd import load_aimet, spatial_svd_auto, spatial_svd_manual  # noqa: E402


def check(name: str, dense, compressed, info, example, inputs, reference) -> dict:
    assert type(compressed) is type(dense), type(compressed)
    leftover = [n for n, m in compressed.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    assert not leftover, f"hooks left on {leftover}"
    with torch.no_grad():
        out = compressed(inputs)
    assert out.shape == reference.shape and torch.isfinite(out).all()
    mse = float(torch.mean((out - reference) ** 2))
    t0 = time.perf_counter()
    exported = torch.export.export(compressed, (example,))
    with torch.no_grad():
        same = torch.allclose(exported.module()(example), compressed(example), atol=1e-5)
    assert same, "exported program disagrees with the module"
    print(f"\n== {name}: {info['seconds']:.1f} s in AIMET"
          + (f", {info['eval_calls']} eval calls" if "eval_calls" in info else ""))
    print(f"MACs {info['macs_before']:,} -> {info['macs_after']:,} (x{info['mac_ratio']:.3f}); "
          f"params {info['params_before']:,} -> {info['params_after']:,}; "
          f"AIMET's mac ratio {info['aimet_stats']['mac_compression_ratio']}, "
          f"memory ratio {info['aimet_stats']['memory_compression_ratio']}")
    print(f"AIMET accuracy stats: baseline {info['aimet_stats']['baseline_model_accuracy']}, "
          f"compressed {info['aimet_stats']['compressed_model_accuracy']}; MSE to dense on 64 inputs {mse:.3e}")
    print(f"ignored: {info['ignored']}")
    for layer, r in info["layers"].items():
        ratio = info["aimet_stats"]["per_layer_comp_ratio"].get(layer)
        print(f"  {layer:8s} rank {r['rank']:3d}/{r['full_rank']:3d}  ratio asked {ratio}, reached {r['mac_ratio']:.3f}"
              f"  {r['split']}")
    untouched = [n for n, ratio in info["aimet_stats"]["per_layer_comp_ratio"].items() if n not in info["layers"]]
    if untouched:
        print(f"  left dense by AIMET's choice: {untouched}")
    print(f"torch.export.export: ok ({time.perf_counter() - t0:.1f} s), exported == module")
    json.dumps(info)   # JSON-able
    return {"mse_to_dense": mse, **info}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", help="write both infos here")
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--candidates", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)   # the machine is shared
    torch.manual_seed(0)

    t0 = time.perf_counter()
    aimet_torch = load_aimet()[0]
    print(f"aimet_torch {aimet_torch.__version__} from {Path(aimet_torch.__file__).parent}, "
          f"torch {torch.__version__}; import {time.perf_counter() - t0:.1f} s; "
          f"torchvision in sys.modules after import: {'torchvision' in sys.modules}")

    dense = mynet.TwoBranchNet(32).eval()
    example = torch.randn(1, 1, 28, 28)
    inputs = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        reference = dense(inputs)

    def eval_fn(model) -> float:   # higher is better: negative MSE to the dense outputs
        with torch.no_grad():
            return -float(torch.mean((model(inputs) - reference) ** 2))

    results = {}
    model, info = spatial_svd_auto(dense, example, eval_fn, target_ratio=args.target, candidates=args.candidates)
    results["auto"] = check(f"auto (greedy, target {args.target}, {args.candidates} candidates)", dense, model, info,
                            example, inputs, reference)
    with tempfile.TemporaryDirectory() as tmp:   # the greedy eval table, reused for a second target
        table = str(Path(tmp) / "eval_scores.pkl")
        spatial_svd_auto(dense, example, eval_fn, target_ratio=0.7, candidates=args.candidates,
                         eval_scores_path=table)
        model, info = spatial_svd_auto(dense, example, eval_fn, target_ratio=0.7, eval_scores_path=table)
        assert info["reused_eval_scores"] and info["eval_calls"] == 2, info["eval_calls"]
        results["auto_reused_table"] = check("auto, target 0.7, greedy eval table reused from a file", dense, model,
                                             info, example, inputs, reference)
    model, info = spatial_svd_manual(dense, example, 0.5, eval_fn=eval_fn)
    results["manual"] = check("manual (0.5 on every eligible conv)", dense, model, info, example, inputs, reference)
    with torch.no_grad():
        assert torch.equal(dense(inputs), reference), "the caller's model was modified"
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
