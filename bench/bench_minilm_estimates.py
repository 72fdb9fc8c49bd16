"""ESTIMATED dense latency of transformer encoders on devices not at hand, next to published measurements.

    python bench/bench_minilm_estimates.py              # markdown table on stdout

Each model is factorized, captured (``LoDCheckpoint.from_model``) and estimated as ``fit`` estimates it: every
LoD layer at dense plus every other op of the exported program (attention matmuls, softmax, norms, GELU),
from the device profile's cited compute figures, with the device class's error band (P10-P90 of published /
estimate over the estimator suite). Nothing here is fitted to the published figures it prints.

Rows:
- all-MiniLM-L6-v2 (the real weights) at seq 128 on pixel7 and rpi5: what examples/minilm fits;
- the same at seq 80 on rpi4 and sd8gen2 (the published MiniLM figures used ~80-token sentences);
- MobileBERT (HF ``MobileBertModel``, google/mobilebert-uncased's config, random weights: latency does not
  depend on them) at seq 128 on pixel4, the device of the MobileBERT paper's 62 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch import nn

import maestro_edge as me
from maestro_edge.devices.profile import find_profile
from maestro_edge.latency.error_band import band_ms, error_band
from maestro_edge.latency.profile import estimated_table
from maestro_edge.lod.layers import lod_layers

MINILM_DIR = Path(__file__).resolve().parents[1] / "examples" / "minilm"


class HiddenStates(nn.Module):
    """An HF encoder taking (ids, mask), returning its last hidden states."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, ids, mask):
        return self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


def minilm(seq: int):
    sys.path.insert(0, str(MINILM_DIR))
    import sentence_encoder as se

    return se.load_encoder(), seq


def mobilebert(seq: int):
    from transformers import MobileBertConfig, MobileBertModel

    torch.manual_seed(0)
    config = MobileBertConfig(attn_implementation="eager")   # the defaults are google/mobilebert-uncased's
    return HiddenStates(MobileBertModel(config, add_pooling_layer=False)), seq


def dense_estimate(model: nn.Module, seq: int, device: str, threads: int) -> tuple[float, float, float, float]:
    """(estimate, band low, band high, GMAC of the LoD layers) of the dense model, batch 1."""
    model = model.eval()
    me.factorize_(model)
    example = (torch.ones(1, seq, dtype=torch.long), torch.ones(1, seq, dtype=torch.long))
    ckpt = me.LoDCheckpoint.from_model(model, example)
    profile = find_profile(device).with_threads(threads)
    table = estimated_table(ckpt, profile)
    ms = table.predict_ms({name: "dense" for name in lod_layers(ckpt.model)})
    low, high = band_ms(ms, error_band(profile))
    macs = sum(seq * layer.in_features * layer.out_features for layer in lod_layers(ckpt.model).values()
               if hasattr(layer, "in_features"))
    return ms, low, high, macs / 1e9


# (model, seq, device, threads, runtime as the profile says, published ms, published what, source)
ROWS = [
    ("all-MiniLM-L6-v2", minilm, 128, "pixel7", 4, None, "none found for a Pixel 7", ""),
    ("all-MiniLM-L6-v2", minilm, 128, "rpi5", 4, None, "none found for a Pi 5", ""),
    ("all-MiniLM-L6-v2", minilm, 80, "sd8gen2", 4, 21.0,
     "OnePlus 12 (Snapdragon 8 Gen 3, a newer SoC than this profile), ExecuTorch XNNPACK, ~80 tokens, "
     "threads not stated: 21 ms (31 ms in an older release)",
     "software-mansion/react-native-executorch docs/docs/04-benchmarks/inference-time.md @49fcc59a (@12730f2f)"),
    ("all-MiniLM-L6-v2", minilm, 80, "rpi4", 4, 34.0,
     "Raspberry Pi 4, onnxruntime (Rust ort), length/threads/precision not stated: 34 ms (weak source)",
     "shodh-memory.com/blog/embedding-models-edge-devices"),
    ("MobileBERT", mobilebert, 128, "pixel4", 4, 62.0,
     "Pixel 4, TFLite, 4 threads, seq 128: 62 ms",
     "Sun et al., MobileBERT, ACL 2020 (arXiv:2004.02984), abstract and Table 4"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    torch.set_num_threads(1)
    print("| model | seq | device (profile) | threads | ESTIMATED dense ms | error band (P10-P90) | Linear GMAC | "
          "published | published / estimate | source |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, build, seq, device, threads, published, what, source in ROWS:
        model, seq = build(seq)
        ms, low, high, gmac = dense_estimate(model, seq, device, threads)
        ratio = f"{published / ms:.2f}" if published else "-"
        print(f"| {name} | {seq} | {device} | {threads} | {ms:.1f} | {low:.1f}-{high:.1f} | {gmac:.2f} | {what} | "
              f"{ratio} | {source} |", flush=True)


if __name__ == "__main__":
    main()
