"""LoD fine-tuning of all-MiniLM-L6-v2 by distillation from the frozen original, then its importance table
and a checkpoint that ``maestro-edge fit`` takes without this folder's code.

    python finetune.py --out minilm.lod --minutes 35            # LoD: the run BENCHMARKS.md reports
    python finetune.py --out minilm-svd.lod --svd-only           # the SVD-of-the-original baseline
    python finetune.py --out /tmp/t.lod --layers 2 --steps 20 --val-sentences 16    # a smoke run (~3 min)

Every Linear of the encoder (query, key, value, attention output, both FFN layers, in every block) is split
by exact SVD at full rank (the same function), then trained with LoD in a plain loop: each step one layer runs
truncated to a sampled rank and the model is pulled toward the original's embeddings (1 - cosine) and last
hidden states (MSE over the real tokens), plus the hierarchical group lasso that orders the components. The
training text never includes the Lee-50 documents or any held-out sentence (corpora.py). Then every layer is
scored at every rank on held-out validation sentences (mean cosine to the original's embeddings) and the
checkpoint is written with that table. Only the block marked "maestro-edge" is new to a user's script.
"""

from __future__ import annotations

import argparse
import copy
import math
import time

import torch

import corpora
import evals
import sentence_encoder as se


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, s_hidden: torch.Tensor,
                      t_hidden: torch.Tensor, mask: torch.Tensor, mse_weight: float) -> torch.Tensor:
    """1 - cosine of the (normalised) sentence embeddings + mse_weight x MSE of the last hidden states (real tokens)."""
    cosine = (student * teacher).sum(-1).mean()
    weights = mask.unsqueeze(-1).to(s_hidden.dtype)
    mse = ((s_hidden - t_hidden).pow(2) * weights).sum() / (weights.sum() * s_hidden.shape[-1])
    return (1 - cosine) + mse_weight * mse


def lod_finetune(model, teacher, args, schedule, say=print) -> dict:
    """The plain training loop, bounded by --steps and/or --minutes; linear warm-up then linear decay."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    passages = corpora.Passages(seed=args.seed)
    budget_s = args.minutes * 60 if args.minutes else math.inf
    max_steps = args.steps or 10**9
    warmup = max(1, min(50, max_steps // 10))   # steps of linear warm-up
    model.eval()   # no dropout: the student should match the teacher's deterministic outputs
    started, step, recent, tokens = time.perf_counter(), 0, [], 0
    while step < max_steps and time.perf_counter() - started < budget_s:
        done = max(step / max_steps, (time.perf_counter() - started) / budget_s)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min((step + 1) / warmup, max(0.0, 1.0 - done))
        ids, mask = se.tokenize(passages.batch(args.batch), se.SEQ_LEN if args.fixed_length else None)
        tokens += int(mask.sum())
        t0 = time.perf_counter()
        with torch.no_grad():
            t_hidden, t_emb = teacher.hidden_and_embedding(ids, mask)
        with schedule.step():                          # one layer truncated to a sampled rank for this step
            s_hidden, s_emb = model.hidden_and_embedding(ids, mask)
            loss = distillation_loss(s_emb, t_emb, s_hidden, t_hidden, mask, args.mse_weight)
            total = loss + schedule.penalty()          # the group lasso orders each layer's components
            optimizer.zero_grad(set_to_none=True)
            total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        recent.append((loss.item(), time.perf_counter() - t0))
        if step % args.log_every == 0 or step == max_steps:
            mean_loss = sum(l for l, _ in recent) / len(recent)
            mean_s = sum(s for _, s in recent) / len(recent)
            say(f"step {step}: distillation loss {mean_loss:.5f}, {mean_s:.2f} s/step, "
                f"{time.perf_counter() - started:.0f} s elapsed")
            recent = []
    shrunk = schedule.end_epoch_()                     # progressive shrinking, once at the end
    seconds = time.perf_counter() - started
    return {"steps": step, "seconds": seconds, "shrunk": shrunk, "tokens": tokens,
            "s_per_step": seconds / max(1, step)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="the checkpoint to write (e.g. minilm.lod; ~90 MB)")
    parser.add_argument("--svd-only", action="store_true",
                        help="no fine-tuning: the SVD of the original with its own importance (the baseline)")
    parser.add_argument("--minutes", type=float, default=None, help="stop fine-tuning after this long")
    parser.add_argument("--steps", type=int, default=None, help="stop fine-tuning after this many steps")
    parser.add_argument("--batch", type=int, default=16, help="passages per step")
    parser.add_argument("--lr", type=float, default=3e-5, help="peak learning rate (AdamW)")
    parser.add_argument("--mse-weight", type=float, default=1.0, help="weight of the hidden-state MSE")
    # MiniLM's group lasso at full rank is ~3e5 and the distillation loss ~0.03: LoDSchedule's default 1e-4 made
    # the penalty 1000x the loss, and Adam drove every component toward zero (the loss climbed 0.027 -> 0.05
    # in 775 steps). 3e-8 makes it ~0.01, a third of the loss: it orders the components, distillation leads.
    parser.add_argument("--gl-lambda", type=float, default=3e-8,
                        help="group lasso weight (LoDSchedule); scale it to the loss (printed at the start)")
    parser.add_argument("--fixed-length", action="store_true",
                        help="pad every passage to 128 tokens while training (default: to the batch's longest; "
                             "same gradients, less work)")
    parser.add_argument("--train-embeddings", action="store_true",
                        help="also train the token/position embeddings (default: frozen; 11.7M of the 22.6M weights)")
    parser.add_argument("--train-only", action="store_true", help="stop after fine-tuning (to time steps)")
    parser.add_argument("--layers", type=int, default=None, help="keep only the first N blocks (test size)")
    parser.add_argument("--val-sentences", type=int, default=evals.VAL_SENTENCES,
                        help="held-out validation sentences the importance table is scored on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    if not args.svd_only and not (args.minutes or args.steps):
        parser.error("give --minutes and/or --steps (or --svd-only)")
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(corpora.describe())
    model = se.load_encoder(args.layers)
    example = se.tokenize(["Sentence embeddings on the phone, without a server."])   # (1, 128) ids and mask
    val_sentences = args.val_sentences

    def val_cosine(m):   # eager models take any length: pad each batch to its longest sentence
        return evals.mean_cosine(m, "val", val_sentences, length=None)

    def lee(m):
        return evals.lee_pearson(m)

    print(f"original: Lee-50 Pearson {lee(model):.4f}, val cosine {val_cosine(model):.5f}")

    # ---- maestro-edge ------------------------------------------------------------------------
    import maestro_edge as me

    teacher = copy.deepcopy(model).eval().requires_grad_(False)   # the frozen original, before factorize_
    report = me.factorize_(model)    # every encoder Linear: q, k, v, attention output, FFN in and out
    print(report)
    expected = 6 * len(model.bert.encoder.layer)
    if len(report.swapped) != expected:
        raise SystemExit(f"expected {expected} factorized Linear layers, got {len(report.swapped)}")
    lod = [m for m in model.modules() if isinstance(m, me.LoDLayer)]
    for layer in lod:   # training and scoring: high ranks run as one dense op on U_r V_r (same function)
        layer.compose_weights = True
    t0 = time.perf_counter()
    print(f"factorized (exact SVD, full rank): val cosine {val_cosine(model):.5f} "
          f"({time.perf_counter() - t0:.1f} s per score; the importance table takes ~{len(lod) * 8 + 1})")
    if not args.train_embeddings:
        model.bert.embeddings.requires_grad_(False)
    recipe = {"svd_only": args.svd_only}
    if not args.svd_only:
        schedule = me.LoDSchedule(model, gl_lambda=args.gl_lambda, seed=args.seed)
        print(f"group lasso penalty at the start: {schedule.penalty().item():.4g} (gl_lambda {args.gl_lambda:g}); "
              "keep it below the distillation loss")
        history = lod_finetune(model, teacher, args, schedule)
        recipe.update({k: history[k] for k in ("steps", "seconds", "s_per_step", "tokens")},
                      batch=args.batch, lr=args.lr, mse_weight=args.mse_weight, gl_lambda=args.gl_lambda,
                      layers=len(model.bert.encoder.layer))
        print(f"LoD fine-tuning: {history['steps']} steps in {history['seconds']:.0f} s "
              f"({history['s_per_step']:.2f} s/step, {history['tokens']} tokens); shrunk: {history['shrunk'] or 'none'}")
        print(f"fine-tuned, full rank: Lee-50 Pearson {lee(model):.4f}, val cosine {val_cosine(model):.5f}")
        if args.train_only:
            return
    started, scored, total = time.perf_counter(), [0], 8 * len(lod)   # 8 ranks per layer (the grid)

    def progress(line: str) -> None:   # called once per truncated model scored
        scored[0] += 1
        if scored[0] % max(1, total // 20) == 0:
            print(f"{line}, {time.perf_counter() - started:.0f} s")

    table = me.importance_table(model, val_cosine, example, metric_name=evals.METRIC_NAME, progress=progress)
    print(f"importance table: {time.perf_counter() - started:.0f} s")
    for layer in lod:
        layer.compose_weights = False   # export the plain factor pairs
    name = "all-MiniLM-L6-v2" + (f"-{args.layers}L" if args.layers else "") + ("-svd" if args.svd_only else "-lod")
    ckpt = me.LoDCheckpoint.from_model(model, example, importance=table, name=name)
    ckpt.metrics = {"finetune": recipe}   # saved with the checkpoint's metadata (plain numbers)
    ckpt.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
