"""Quality (and latency) of fitted MiniLMs, the dense original and uniform-rank models, on data nobody here made.

    python evaluate.py --dense                                           # the original (Lee-50 ~0.65)
    python evaluate.py --model minilm.lod --fit out/host-15ms --fit out/host-10ms --pte --time
    python evaluate.py --model minilm.lod --uniform-from out/host-15ms --time      # the uniform-rank baseline
    python evaluate.py --model minilm.lod --uniform 0.25 --uniform 0.4 --json uniform.json

For each model: Lee-50 document similarity (Pearson of the embeddings' cosine similarities of the 50 Lee et
al. (2005) documents, truncated to 128 tokens, with the mean human ratings) and the mean cosine to the
original's embeddings on held-out test sentences (evals.py). A fitted model is rebuilt from its fit.json
ranks with the public API (``maestro_edge.truncate_`` on the checkpoint's model); ``--pte`` also runs the
fitted ``model.pte`` itself in the ExecuTorch runtime (batch 1, what ships) and reports its metrics.
``--time`` times every model's .pte here, all with one protocol (1 thread, interleaved rounds, median of
round medians); a uniform-rank model is exported for it with ``maestro_edge.Fitter.export``.
A uniform-rank model keeps the same fraction of every layer's rank, on the ranks the latency table measured
(fit's ``--baselines``, ``maestro_edge.uniform_choices``).
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
import warnings
from pathlib import Path

import torch

import corpora
import evals
import sentence_encoder as se


def metrics_of(model, sentences: int, lee_docs: int | None) -> dict:
    layers = evals.layers_of(model)
    return {"lee_pearson": evals.lee_similarity_pearson(evals.lee_embeddings(model, lee_docs)),
            "cosine": evals.mean_cosine(model, "test", sentences),
            "layers": layers}


class PteModel:
    """A .pte as a callable taking (ids, mask) batches: one ExecuTorch call per row (it was exported at batch 1)."""

    def __init__(self, path: Path, layers: int):
        from executorch.runtime import Runtime

        self.buffer = Path(path).read_bytes()   # the runtime reads this buffer: keep it alive
        self.method = Runtime.get().load_program(self.buffer).load_method("forward")
        self.layers = layers

    def named_modules(self):   # evals.layers_of counts blocks by module names
        return [(f"bert.encoder.layer.{i}", None) for i in range(self.layers)]

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.method.execute((ids[i:i + 1], mask[i:i + 1]))[0] for i in range(len(ids))])


def time_ptes(paths: dict[str, Path], example: tuple, rounds: int = 15, calls: int = 20, warmup: int = 5,
              threads: int = 1) -> dict[str, dict]:
    """Each .pte timed on this host: ExecuTorch's thread pool at ``threads``, rounds interleaved in a shuffled
    order (drift hits every model alike), the median of each round, then the median and min of those."""
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    torch.set_num_threads(threads)
    buffers = {name: Path(p).read_bytes() for name, p in paths.items()}
    methods = {name: Runtime.get().load_program(b).load_method("forward") for name, b in buffers.items()}
    for method in methods.values():
        for _ in range(warmup):
            method.execute(example)
    medians = {name: [] for name in methods}
    order, shuffle = list(methods), random.Random(0)
    for _ in range(rounds):
        shuffle.shuffle(order)
        for name in order:
            samples = []
            for _ in range(calls):
                start = time.perf_counter_ns()
                methods[name].execute(example)
                samples.append((time.perf_counter_ns() - start) / 1e6)
            medians[name].append(statistics.median(samples))
    return {name: {"p50_ms": statistics.median(v), "min_ms": min(v), "rounds": rounds} for name, v in medians.items()}


def uniform_ranks(ckpt, fraction: float) -> dict:
    """What fit's --baselines scores: every layer at the largest grid rank at or below fraction x its rank
    (``maestro_edge.uniform_choices``); fraction 1 is every layer dense."""
    import maestro_edge as me

    return me.uniform_choices(ckpt.model, fraction)


def truncated(ckpt, ranks: dict):
    import maestro_edge as me

    with warnings.catch_warnings():   # copying a loaded program warns about torch internals
        warnings.simplefilter("ignore")
        model = copy.deepcopy(ckpt.model)
    return me.truncate_(model, ranks).eval()


def rank_summary(ranks: dict) -> str:
    kept = [r for r in ranks.values() if r != "dense"]
    dense = len(ranks) - len(kept)
    return f"{dense} dense, {len(kept)} cut" + (f" (ranks {min(kept)}-{max(kept)})" if kept else "")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", action="store_true", help="the original MiniLM (not factorized)")
    parser.add_argument("--layers", type=int, default=None, help="with --dense: its first N blocks only")
    parser.add_argument("--model", help="the checkpoint the fits were made from (finetune.py's --out)")
    parser.add_argument("--fit", action="append", default=[], help="an output folder of 'maestro-edge fit' (repeat)")
    parser.add_argument("--uniform", action="append", type=float, default=[], help="a uniform rank fraction (repeat)")
    parser.add_argument("--uniform-from", action="append", default=[],
                        help="the uniform-rank baseline's fraction from a fit folder's fit.json (fit --baselines)")
    parser.add_argument("--pte", action="store_true", help="also score each fitted model.pte in ExecuTorch")
    parser.add_argument("--time", action="store_true", help="time every model's .pte here (1 thread)")
    parser.add_argument("--time-also", action="append", default=[],
                        help="with --time: another fit folder whose model.pte joins the same timing run (e.g. the "
                             "SVD baseline's fits, from another checkpoint; timed, not scored)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--exports", default=None, help="where uniform-rank exports go (default: beside --model)")
    parser.add_argument("--sentences", type=int, default=evals.EVAL_SENTENCES, help="held-out test sentences")
    parser.add_argument("--lee-docs", type=int, default=None, help="the first N Lee documents only (tests)")
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args(argv)
    if (args.fit or args.uniform or args.uniform_from) and not args.model:
        parser.error("--fit/--uniform need --model (the checkpoint the fits were made from)")
    rows, ptes = [], {}
    if args.dense:
        original = se.load_encoder(args.layers)
        rows.append({"name": "dense original", **metrics_of(original, args.sentences, args.lee_docs)})
        print(_line(rows[-1]))
    ckpt = None
    if args.model:
        import maestro_edge as me

        ckpt = me.LoDCheckpoint.load(args.model)
        if args.time:   # the dense reference, exported from the checkpoint with every layer dense
            ptes["dense (all layers dense)"] = _export(ckpt, {n: "dense" for n in uniform_ranks(ckpt, 1)},
                                                       _exports(args, "dense"))
    for folder in map(Path, args.fit):
        record = json.loads((folder / "fit.json").read_text())
        digest = record.get("model", {}).get("digest")
        if digest and digest != ckpt.digest():
            raise SystemExit(f"{folder} was fitted from another model (digest {digest}, {args.model} is {ckpt.digest()})")
        row = {"name": str(folder), "device": record["device"], "budget_ms": record["budget_ms"],
               "fit_measured_ms": record["measured_ms"], "predicted_ms": record["predicted_ms"],
               "predicted_low_ms": record.get("predicted_low_ms"), "predicted_high_ms": record.get("predicted_high_ms"),
               "fit_metric": record.get("accuracy"), "ranks": rank_summary(record["ranks"]),
               **metrics_of(truncated(ckpt, record["ranks"]), args.sentences, args.lee_docs)}
        if args.pte and (folder / "model.pte").is_file():
            pte = PteModel(folder / "model.pte", row["layers"])
            scored = metrics_of(pte, args.sentences, args.lee_docs)
            row.update(pte_lee_pearson=scored["lee_pearson"], pte_cosine=scored["cosine"])
        if (folder / "model.pte").is_file():
            ptes[row["name"]] = folder / "model.pte"
        rows.append(row)
        print(_line(rows[-1]))
    fractions = list(args.uniform)
    for folder in map(Path, args.uniform_from):
        record = json.loads((folder / "fit.json").read_text())
        found = [b["fraction"] for b in record.get("baselines", []) if b.get("name") == "uniform-rank"]
        if not found:
            raise SystemExit(f"{folder}/fit.json has no uniform-rank baseline: fit with --baselines")
        fractions.append(found[0])
    for fraction in fractions:
        ranks = uniform_ranks(ckpt, fraction)
        row = {"name": f"uniform {fraction:.4g}", "fraction": fraction, "ranks": rank_summary(ranks),
               **metrics_of(truncated(ckpt, ranks), args.sentences, args.lee_docs)}
        if args.time:
            ptes[row["name"]] = _export(ckpt, ranks, _exports(args, f"uniform-{fraction:.4g}"))
        rows.append(row)
        print(_line(rows[-1]))
    for folder in map(Path, args.time_also):
        ptes[str(folder)] = folder / "model.pte"
    if args.time and ptes:
        example = se.tokenize(corpora.lee_documents()[:1])
        print(f"timing {len(ptes)} .pte files ({args.rounds} rounds, 1 thread)")
        for name, timing in time_ptes(ptes, example, rounds=args.rounds).items():
            match = [r for r in rows if r["name"] == name]
            if match:
                match[0].update(timed_p50_ms=timing["p50_ms"], timed_min_ms=timing["min_ms"])
            else:
                rows.append({"name": name, "timed_p50_ms": timing["p50_ms"], "timed_min_ms": timing["min_ms"]})
        for row in rows:
            print(_line(row))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


def _exports(args, what: str) -> Path:
    base = Path(args.exports) if args.exports else Path(args.model).with_suffix("")
    return Path(f"{base}-{what}") if not args.exports else base / what


def _export(ckpt, ranks: dict, out: Path) -> Path:
    """The model truncated to ``ranks``, exported (.pte and .onnx, both verified) with the public Fitter."""
    import maestro_edge as me

    if not (out / "model.pte").is_file() or json.loads((out / "export.json").read_text())["ranks"] != ranks:
        me.Fitter(ckpt).export(ranks, out)
    return out / "model.pte"


def _line(row: dict) -> str:
    parts = [row["name"]]
    for key, label in (("lee_pearson", "Lee-50 r"), ("cosine", "cosine"), ("pte_lee_pearson", ".pte Lee-50 r"),
                       ("pte_cosine", ".pte cosine"), ("fit_measured_ms", "fit measured ms"),
                       ("predicted_ms", "predicted ms"), ("timed_p50_ms", "timed ms")):
        if row.get(key) is not None:
            parts.append(f"{label} {row[key]:.4f}" if "ms" not in key else f"{label} {row[key]:.2f}")
    if row.get("ranks"):
        parts.append(row["ranks"])
    return " | ".join(parts)


if __name__ == "__main__":
    main()
