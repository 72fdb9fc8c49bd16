"""Make a trained checkpoint small enough to ship: the shrunk factors only, optionally stored in fp16.

    python -m maestro_edge.lod.compact TRAINED.pt SHIPPED.pt [--fp16]

- every LoD layer keeps only its first ``active_rank`` components (progressive shrinking already
  zeroed the rest out of use; the importance table and the solver never go above the active rank);
- the optimizer and sampler state that makes a run resumable is dropped (the epoch history stays);
- ``--fp16`` stores the floating-point tensors in half precision. They are loaded back into fp32
  and the model runs in fp32; the rounding is part of the shipped model, so the held-out accuracy
  ``fit`` measures is that of the rounded weights. The checkpoint records it in ``metrics``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from maestro_edge.errors import CheckpointError, MaestroError, UsageError
from maestro_edge.lod.checkpoint import LoDCheckpoint
from maestro_edge.lod.layers import lod_layers
from maestro_edge.outputs import check_output_file, shown


def compact(ckpt: LoDCheckpoint, fp16: bool = False) -> dict:
    """The checkpoint's dict form with factors cut to the active ranks (and fp16 tensors if asked).

    ``ckpt`` itself is changed in place (its layers truncated, its resumable state dropped).
    """
    for layer in lod_layers(ckpt.model).values():
        if layer.max_rank > layer.active_rank:
            layer.truncate_(layer.active_rank)
    ckpt.progress = {k: v for k, v in ckpt.progress.items() if k in ("epochs_done", "complete", "history")}
    if fp16:
        ckpt.metrics = {**ckpt.metrics, "stored_dtype": "float16"}
    blob = ckpt.to_dict()
    if fp16:
        blob["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    return blob


def check_shipped_path(trained: Path, shipped: Path) -> None:
    """Refuse, before loading anything, an output path that cannot be written, the input itself, or a file
    that is not a checkpoint (someone's work: only a checkpoint is replaced)."""
    check_output_file(shipped)
    if not os.path.lexists(shipped):
        return
    if os.path.exists(trained) and os.path.samefile(trained, shipped):
        raise UsageError(f"the output {shown(shipped)} is the trained checkpoint itself; give another output path "
                         "(compact never replaces its input)")
    try:
        LoDCheckpoint.load(shipped)
    except CheckpointError:
        raise UsageError(f"the output {shown(shipped)} already exists and is not a maestro-edge checkpoint; give "
                         "another output path, or delete that file") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trained", type=Path)
    parser.add_argument("shipped", type=Path)
    parser.add_argument("--fp16", action="store_true", help="store floating-point tensors in half precision")
    args = parser.parse_args(argv)
    try:
        check_shipped_path(args.trained, args.shipped)
        ckpt = LoDCheckpoint.load(args.trained)
        if not ckpt.progress.get("complete"):
            raise MaestroError(f"{args.trained} is an unfinished training run; finish it before compacting")
        LoDCheckpoint.save_dict(compact(ckpt, args.fp16), args.shipped)
    except MaestroError as e:
        print("Error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    shipped = LoDCheckpoint.load(args.shipped)
    size = args.shipped.stat().st_size
    print(f"wrote {args.shipped}: {size / 1e6:.1f} MB, digest {shipped.digest()}, "
          f"{sum(p.numel() for p in shipped.model.parameters()) / 1e6:.2f} M parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
