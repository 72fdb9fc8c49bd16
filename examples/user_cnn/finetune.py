"""The user's workflow: train dense in a plain loop, then LoD-fine-tune through maestro-edge's public API.

    python finetune.py --out mynet.lod                      # sklearn digits (8x8), ~1 minute on 2 cores
    MYNET_DATA=fashion-mnist python finetune.py --out mynet.lod --dense-epochs 3 --lod-epochs 2
    maestro-edge fit --model mynet.lod --device host --ms 1 --eval mynet:score --calibrate mynet:calibration

Only the block marked "maestro-edge" is new to a user's script; the rest is ordinary PyTorch.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

import mynet


def dense_training(model, train_x, train_y, epochs: int, batch: int = 64) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(epoch))
        for idx in order.split(batch):
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--dense-epochs", type=int, default=6)
    parser.add_argument("--lod-epochs", type=int, default=2)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=None,
                        help="train on the first N images only (a quick model for latency work)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    train_x, train_y, *_ = mynet.load()
    train_x, train_y = train_x[:args.train_images], train_y[:args.train_images]
    model = mynet.TwoBranchNet(args.width)
    started = time.perf_counter()
    dense_training(model, train_x, train_y, args.dense_epochs)
    print(f"dense: accuracy {mynet.score(model):.4f} ({time.perf_counter() - started:.0f} s)")

    # ---- maestro-edge ------------------------------------------------------------------------
    import maestro_edge as me

    teacher = copy.deepcopy(model).eval()
    print(me.factorize_(model))                        # exact SVD split: same outputs at full rank
    loader = list(zip(train_x.split(64), train_y.split(64)))
    started = time.perf_counter()
    me.train_lod(model, loader, F.cross_entropy, epochs=args.lod_epochs, lr=1e-3, teacher=teacher)
    print(f"LoD fine-tuning: {time.perf_counter() - started:.0f} s, accuracy {mynet.score(model):.4f}")
    table = me.importance_table(model, mynet.val_score, train_x[:1])   # validation data, not test
    me.LoDCheckpoint.from_model(model, train_x[:1], importance=table).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
