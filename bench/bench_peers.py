"""maestro-edge against the tools users would pick instead, at equal measured latency (issue 23).

    python bench/bench_peers.py --smoke                      # digits, tiny epochs: a few minutes
    python bench/bench_peers.py --work /tmp/peers --epochs 1 # Fashion-MNIST, the shipped dense start model

One dense model (examples/user_cnn's TwoBranchNet, trained once with a fixed seed: bench/peers/dense.py; the
Fashion-MNIST one ships in bench/checkpoints/) reaches each budget (a fraction of its own latency, measured here:
ExecuTorch XNNPACK, 1 thread, the same export call for every method) by:
- maestro-edge: exact SVD split, LoD fine-tuning distilled from the dense model for E epochs **once**, importance
  on the validation split, one host profile, then ``Fitter.fit`` per budget (solver + closed loop);
- maestro-edge + recovery (a lever): the fitted model fine-tuned E epochs per budget with ``me.recover``;
- SVD + solver (the same split, no LoD training) and uniform rank (one rank fraction everywhere, on the grid);
- Torch-Pruning, magnitude and Taylor importance: per budget, the pruning ratio is bisected against latency
  measured side by side with the dense model, for each ``round_to``; the candidate with the best validation
  accuracy is fine-tuned E epochs (``me.recover``'s loop: distilled from the dense model, BatchNorm recalibrated);
- AIMET spatial SVD where it installs (bench/peers/install_aimet.sh), its ratio searched the same way.
Two fairness settings: equal fine-tuning per budget (above), and equal total compute for 3 budgets x 3 devices
(CPU-seconds of every step; a peer's fine-tuning is cut to the steps that make its total equal maestro-edge's).
At the end every chosen model's .pte is timed in one interleaved session and scored on the test split (95%
Wilson intervals). Every step is saved under --work; a rerun resumes where the last one stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import dense as dense_start  # noqa: E402
from peers.common import Data, Ledger, PairedLatency, fmt_interval, test_score, val_accuracy  # noqa: E402
from peers import aimet_svd  # noqa: E402
from peers.torch_pruning_peer import prune, safe_ignored_layers  # noqa: E402

PLAN_CANDIDATES = 8   # maestro-edge + plan choice: the solver's plan and up to 8 next-best ones, scored on validation
DEVICES, SHIPPED = 3, Path(__file__).resolve().parent / "checkpoints" / "user_cnn_fmnist_dense.pt"


@dataclass(frozen=True)
class Peer:
    """A tool a user would pick instead: its knob families (Torch-Pruning's round_to values, AIMET's modes), each
    a knob from its slow end (the dense model) to its fast end, and how to build a model from (family, knob)."""
    key: str
    label: str
    families: list[dict]
    build: Callable[[dict, float], torch.nn.Module]


@dataclass(frozen=True)
class Settings:
    data: str
    epochs: int                # fine-tuning epochs: once for maestro-edge, per budget for every peer
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]     # fine-tuning seeds at the tightest budget
    round_to: tuple[int | None, ...]
    bisect_steps: int
    train_images: int | None   # fine-tune on the first N training images only
    max_equal_compute_epochs: int | None = None   # smoke only: a cap on the equal-compute fine-tuning
    lr: float = 1e-3

    @classmethod
    def of(cls, args) -> "Settings":
        budgets = tuple(float(b) for b in args.budgets.split(","))
        if args.smoke:
            return cls("digits", 1, budgets, (0, 1), (None, 16), 4, None, max_equal_compute_epochs=3)
        round_to = tuple(None if r == "none" else int(r) for r in args.round_to.split(","))
        return cls("fashion-mnist", args.epochs, budgets, tuple(range(args.seeds)), round_to, 6, args.train_images)


class Bench:
    def __init__(self, work: Path, settings: Settings, allow_busy: bool):
        from maestro_edge.latency.measure import QUICK

        self.work, self.s, self.allow_busy = work, settings, allow_busy
        (work / "pte").mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(work / "cost.json")
        self.rows_path = work / "rows.json"
        self.rows = json.loads(self.rows_path.read_text()) if self.rows_path.is_file() else {}
        self.data = Data.load(settings.data)
        if settings.train_images:
            self.data.train_x = self.data.train_x[:settings.train_images]
            self.data.train_y = self.data.train_y[:settings.train_images]
        self.dense = self._dense()
        self.val_score = val_accuracy(self.data)
        self.latency = PairedLatency(self.dense, self.data.example, QUICK)

    # ---- the start model and bookkeeping -------------------------------------------------------------------
    def _dense(self):
        if self.s.data == "fashion-mnist" and SHIPPED.is_file():
            model, info = dense_start.load(SHIPPED)
        else:
            path = self.work / "dense.pt"
            if path.is_file():
                model, info = dense_start.load(path)
            else:
                model, info = dense_start.train_dense(self.s.data, epochs=3, width=16)
                dense_start.save(model, info, path)
        print(f"dense start model: {json.dumps(info)}")
        return model

    def keep(self, key: str, method: str, setting: str, budget: float | None, model, **extra) -> None:
        """A chosen model: its .pte saved for the final timing, its test score, what it cost."""
        from maestro_edge.export.pte import export_pte

        pte = self.work / "pte" / (key.replace("|", "_").replace("/", "-") + ".pte")
        pte.write_bytes(export_pte(model, (self.data.example,)).buffer)
        self.rows[key] = {"method": method, "setting": setting, "budget": budget, "pte": str(pte),
                          "test": test_score(model, self.data), "val": self.val_score(model), **extra}
        self.rows_path.write_text(json.dumps(self.rows, indent=1))

    def finetune(self, model, seed: int, max_steps: int | None = None) -> dict:
        import maestro_edge as me

        torch.manual_seed(seed)
        return me.recover(model, self.data.batches(seed), F.cross_entropy, teacher=self.dense,
                          epochs=self.s.epochs if max_steps is None else 10 ** 6, max_steps=max_steps,
                          lr=self.s.lr, calibration=self.data.calibration())

    def seeds_at(self, budget: float) -> tuple[int, ...]:
        return self.s.seeds if budget == min(self.s.budgets) else self.s.seeds[:1]

    # ---- maestro-edge ---------------------------------------------------------------------------------------
    def maestro(self) -> None:
        import maestro_edge as me

        ckpts = {}
        for name, epochs in (("svd", 0), ("lod", self.s.epochs)):
            path = self.work / f"{name}.lod"
            if not path.is_file():
                model = copy.deepcopy(self.dense)
                with self.ledger.measure(f"{name}:train"):
                    me.factorize_(model)
                    if epochs:
                        torch.manual_seed(0)
                        me.train_lod(model, self.data.batches(0), F.cross_entropy, epochs=epochs, lr=self.s.lr,
                                     teacher=self.dense)
                with self.ledger.measure(f"{name}:importance"):
                    table = me.importance_table(model, self.val_score, self.data.example)
                me.LoDCheckpoint.from_model(model, self.data.example, importance=table).save(path)
            ckpts[name] = me.LoDCheckpoint.load(path)
        table = self._host_table(ckpts["lod"])
        for budget in self.s.budgets:
            self._fit("svd", "SVD + solver", ckpts["svd"], table, budget)
            self._fit("lod", "maestro-edge (LoD once)", ckpts["lod"], table, budget)
            self._recovered(ckpts["lod"], budget)
            self._fit("lod+choice", "maestro-edge + plan choice", ckpts["lod"], table, budget, PLAN_CANDIDATES)
        self._uniform(ckpts["svd"], table)

    def _host_table(self, ckpt):
        """One host table serves both checkpoints (tables are keyed by architecture, not weights)."""
        from maestro_edge.devices.profile import find_profile
        from maestro_edge.latency.target import Target

        os.environ["MAESTRO_EDGE_CACHE"] = str(self.work / "cache")
        measured_before = "lod:profile" in self.ledger.entries   # a resumed run does not count the cached table
        with contextlib.nullcontext() if measured_before else self.ledger.measure("lod:profile"):
            table, path, cached = Target.resolve(find_profile("host")).profile_table(ckpt, allow_busy=self.allow_busy)
        print(f"host table {path} ({'cached' if cached else 'measured'}): dense {table.full_model_ms:.4f} ms")
        return table

    def _fit(self, name: str, label: str, ckpt, table, budget: float, plan_candidates: int = 0) -> None:
        from maestro_edge.devices.profile import find_profile
        from maestro_edge.errors import InfeasibleBudget
        from maestro_edge.fit import Fitter, solver_layers
        from maestro_edge.quality import UserMetric
        from maestro_edge.solve.plan import fastest_plan

        key = f"{name}|{budget}|0"
        if key in self.rows:
            return
        quality = UserMetric(ckpt, self.val_score, self.data.calibration, name="val_accuracy")
        fitter, host = Fitter(ckpt, quality=quality, plan_candidates=plan_candidates), find_profile("host")
        budget_ms = budget * self.dense_ms
        note = ""
        with self.ledger.measure(f"{name}:fit@{budget}"):
            try:
                ranks = fitter.fit(host, budget_ms, self.work / "fits" / f"{name}-{budget}", table=table)["ranks"]
            except InfeasibleBudget as e:   # no plan met it (predicted or measured): the fastest plan, said so
                note = f"no plan met {budget_ms:.4g} ms (at best {e.min_ms:.4g} ms): the fastest plan"
                ranks = dict(fastest_plan(solver_layers(ckpt, table), table.overhead_ms).choices)
        self.keep(key, label, "both", budget, fitter.truncated(ranks), ranks=ranks, note=note)

    def _recovered(self, ckpt, budget: float) -> None:
        from maestro_edge.export.truncate import deployable
        from maestro_edge.quality import recalibrate_bn_batches_

        for seed in self.seeds_at(budget):
            key, ranks = f"lod+recover|{budget}|{seed}", self.rows[f"lod|{budget}|0"]["ranks"]
            if key in self.rows:
                continue
            small = deployable(ckpt.model, ranks)
            recalibrate_bn_batches_(small, self.data.calibration())
            with self.ledger.measure(f"lod+recover:finetune@{budget}/{seed}"):
                history = self.finetune(small, seed)
            self.keep(key, "maestro-edge + recovery", "equal fine-tuning", budget, small,
                      ranks=ranks, steps=history["steps"], seed=seed)

    def _uniform(self, ckpt, table) -> None:
        from maestro_edge.export.truncate import deployable
        from maestro_edge.fit import uniform_choices
        from maestro_edge.quality import recalibrate_bn_batches_

        for budget in self.s.budgets:
            key = f"uniform|{budget}|0"
            if key in self.rows:
                continue
            note = ""
            for step in range(64, 0, -1):   # the largest fraction the table says fits (fit --baselines' rule)
                choices = uniform_choices(ckpt.model, step / 64)
                if table.predict_ms(choices) <= budget * table.full_model_ms:
                    break
            else:
                note = "budget below the smallest uniform rank: the smallest"
            small = deployable(ckpt.model, choices)
            recalibrate_bn_batches_(small, self.data.calibration())
            self.keep(key, "uniform rank", "both", budget, small, fraction=step / 64, note=note)

    # ---- the peers: a knob searched against measured latency, then fine-tuning per budget ---------------------
    def peers(self) -> list[Peer]:
        ignored = safe_ignored_layers(self.dense, self.data.example, ["classifier"])
        grads = self.data.batches(0)[:8]
        example = self.data.example
        peers = {imp: Peer(f"tp-{imp}", f"Torch-Pruning {imp}",
                           [{"round_to": r, "slow": 0.0, "fast": 0.95} for r in self.s.round_to],
                           lambda f, ratio, imp=imp: prune(self.dense, example, imp, ratio, f["round_to"], ignored,
                                                           grads))
                 for imp in ("magnitude", "taylor")}
        if aimet_svd.available():
            greedy = str(self.work / "aimet-greedy-eval-scores.pkl")   # AIMET's per-layer table, reused across targets

            def spatial_svd(family, ratio):
                if family["mode"] == "auto":
                    return aimet_svd.spatial_svd_auto(self.dense, example, self.val_score, ratio,
                                                      eval_scores_path=greedy)[0]
                return aimet_svd.spatial_svd_manual(self.dense, example, ratio)[0]
            peers["aimet"] = Peer("aimet-svd", "AIMET spatial SVD",
                                  [{"mode": m, "slow": 1.0, "fast": 0.05} for m in ("auto", "manual")], spatial_svd)
        else:
            print("AIMET is not installed (bench/peers/install_aimet.sh): its rows are left out")
        return [peers[name] for name in ("magnitude", "aimet", "taylor") if name in peers]

    def run_peer(self, peer: Peer) -> None:
        for budget in self.s.budgets:
            found = self._search(peer, budget)
            for seed in self.seeds_at(budget):
                key = f"{peer.key}|{budget}|{seed}"
                if key in self.rows:
                    continue
                model = peer.build(found["family"], found["knob"])
                with self.ledger.measure(f"{peer.key}:finetune@{budget}/{seed}"):
                    history = self.finetune(model, seed)
                self.keep(key, peer.label, "equal fine-tuning", budget, model, found=found, steps=history["steps"],
                          seed=seed, note=found.get("note", ""))

    def _search(self, peer: Peer, budget: float) -> dict:
        """Per knob family (round_to, AIMET mode), the knob nearest its slow end whose measured latency meets the
        budget (bisection); of those, the best on validation before fine-tuning. Where none meets it, the fastest
        candidate, said so. Saved: a rerun does not search again."""
        path = self.work / "search" / f"{peer.key}-{budget}.json"
        if path.is_file():
            return json.loads(path.read_text())
        self.latency.cache.clear()   # each peer pays for its own timings (a user runs one tool)
        met, fastest = [], []
        with self.ledger.measure(f"{peer.key}:search@{budget}"):
            for family in peer.families:
                make = lambda knob: peer.build(family, knob)  # noqa: E731
                slow, fast = family["slow"], family["fast"]
                fraction = self.latency.fraction(make(fast))
                if fraction > budget:
                    fastest.append({"family": family, "knob": fast, "fraction": fraction})
                    continue
                for _ in range(self.s.bisect_steps):
                    mid = (slow + fast) / 2
                    slow, fast = (mid, fast) if self.latency.fraction(make(mid)) > budget else (slow, mid)
                model = make(fast)
                met.append({"family": family, "knob": fast, "fraction": self.latency.fraction(model),
                            "val_before_finetune": self.val_score(model)})
        if met:
            best = max(met, key=lambda c: c["val_before_finetune"])
        else:
            best = min(fastest, key=lambda c: c["fraction"])
            best["note"] = f"budget below its fastest model ({best['fraction']:.0%} of dense in the search)"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(best))
        return best

    # ---- equal total compute --------------------------------------------------------------------------------
    def maestro_totals(self) -> dict[str, float]:
        """CPU-seconds of maestro-edge for 3 budgets x 3 devices: LoD training + importance once, a profile per
        device, a fit per budget and device (and the levers' extra steps)."""
        c, devices = self.ledger, DEVICES
        total = (c.cpu("lod:train") + c.cpu("lod:importance") + devices * c.cpu("lod:profile")
                 + devices * sum(c.cpu(f"lod:fit@{b}") for b in self.s.budgets))
        recovery = devices * sum(c.cpu(f"lod+recover:finetune@{b}/0") for b in self.s.budgets)
        choice = devices * sum(c.cpu(f"lod+choice:fit@{b}") - c.cpu(f"lod:fit@{b}") for b in self.s.budgets)
        return {"maestro-edge (LoD once)": total, "maestro-edge + recovery": total + recovery,
                "maestro-edge + plan choice": total + choice}

    def equal_compute(self, peer: Peer) -> None:
        """The peer's fine-tuning cut (or extended) so that its total for 3 budgets x 3 devices equals
        maestro-edge's (LoD once); a search per budget and device is paid first."""
        c, runs = self.ledger, DEVICES * len(self.s.budgets)
        self.totals = {**getattr(self, "totals", {}), **self.maestro_totals()}
        maestro_total = self.totals["maestro-edge (LoD once)"]
        self.totals[peer.label] = sum(DEVICES * (c.cpu(f"{peer.key}:search@{b}") + c.cpu(f"{peer.key}:finetune@{b}/0"))
                                      for b in self.s.budgets)
        for budget in self.s.budgets:
            key, tuned = f"{peer.key}|{budget}|equal-compute", self.rows[f"{peer.key}|{budget}|0"]
            allowed = maestro_total / runs - c.cpu(f"{peer.key}:search@{budget}")
            per_step = c.cpu(f"{peer.key}:finetune@{budget}/0") / max(1, tuned["steps"])
            steps = max(0, int(allowed / per_step))
            if self.s.max_equal_compute_epochs is not None:   # smoke: a tiny model makes the allowance huge
                steps = min(steps, self.s.max_equal_compute_epochs * len(self.data.batches(0)))
            if key in self.rows:
                continue
            found = tuned["found"]
            model = peer.build(found["family"], found["knob"])
            history = self.finetune(model, 0, max_steps=steps) if steps else {"steps": 0}
            self.keep(key, peer.label, "equal compute", budget, model, found=found, steps=history["steps"],
                      allowed_cpu_s=round(allowed, 1), note=tuned.get("note", ""))

    # ---- the end: every chosen model timed together ---------------------------------------------------------
    def report(self) -> str:
        from maestro_edge.latency.measure import Protocol, time_programs

        spec = (self.data.example,)
        programs = {"dense": (self.latency.dense_pte, spec)}
        programs.update({key: (Path(row["pte"]).read_bytes(), spec) for key, row in self.rows.items()})
        print(f"timing {len(programs)} programs side by side (interleaved rounds, 1 thread)")
        timings = time_programs(programs, Protocol(threads=1))
        dense_ms = timings["dense"].p50_ms
        dense_score = test_score(self.dense, self.data)
        lines = [f"dense: {dense_ms:.4f} ms measured, test accuracy {fmt_interval(dense_score)}", "",
                 "| budget | method | setting | seed | measured / dense | test accuracy [95%] | val | steps | note |",
                 "|---|---|---|---|---|---|---|---|---|"]
        order = {"both": 0, "equal fine-tuning": 1, "equal compute": 2}
        for key, row in sorted(self.rows.items(), key=lambda kv: (-kv[1]["budget"], order[kv[1]["setting"]],
                                                                   kv[1]["method"], kv[0])):
            seed = key.rsplit("|", 1)[1]
            lines.append(f"| {row['budget']:.0%} | {row['method']} | {row['setting']} | {seed} | "
                         f"{timings[key].p50_ms / dense_ms:.1%} | {fmt_interval(row['test'])} | {row['val']:.4f} | "
                         f"{row.get('steps', '-')} | {row.get('note', '')} |")
        totals = getattr(self, "totals", None) or self._ledger_totals()
        if totals:
            lines += ["", "CPU-seconds for 3 budgets x 3 devices (every step; a device's measurements cost what the "
                      "host's did):"] + [f"- {m}: {v:.0f} s" for m, v in totals.items()]
        text = "\n".join(lines)
        (self.work / "report.md").write_text(text + "\n")
        return text

    def _ledger_totals(self) -> dict[str, float]:
        """The CPU-second totals from the saved ledger (a --report-only run), for what is complete in it."""
        c, totals = self.ledger.entries, {}
        try:
            totals.update(self.maestro_totals())
        except KeyError:
            return totals
        for peer_key in sorted({k.split("|")[0] for k in self.rows if k.startswith(("tp-", "aimet-"))}):
            label = next(r["method"] for k, r in self.rows.items() if k.startswith(peer_key + "|"))
            parts = [f"{peer_key}:{step}@{b}" for b in self.s.budgets for step in ("search", "finetune")]
            parts = [p + "/0" if ":finetune@" in p else p for p in parts]
            if all(p in c for p in parts):
                totals[label] = sum(DEVICES * c[p]["cpu_s"] for p in parts)
        return totals

    @property
    def dense_ms(self) -> float:
        """The dense model's latency (timed alone, interleaved rounds, at the run's start): budgets are fractions."""
        path = self.work / "dense_ms.json"   # saved: a resumed run keeps the budgets it started with
        if not path.is_file():
            from maestro_edge.latency.measure import Protocol, time_programs

            spec = (self.data.example,)
            timing = time_programs({"dense": (self.latency.dense_pte, spec)}, Protocol())["dense"]
            path.write_text(json.dumps(timing.p50_ms))
        return json.loads(path.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="folder for every step's results (resumable)")
    parser.add_argument("--smoke", action="store_true", help="digits, 1 epoch, 2 round_to values: a few minutes")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--budgets", default="0.75,0.5,0.35")
    parser.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds at the tightest budget")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--round-to", default="none,8,16,32", help="Torch-Pruning round_to values searched")
    parser.add_argument("--report-only", action="store_true", help="time and print the models kept in --work")
    parser.add_argument("--allow-busy", action="store_true", help="profile even beside busy processes (flagged)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-peers-"))
    bench = Bench(work, Settings.of(args), args.allow_busy)
    if args.report_only:   # time and print what an interrupted run kept
        print(bench.report())
        return
    bench.maestro()
    peers = bench.peers()
    for peer in peers:
        bench.run_peer(peer)
        bench.equal_compute(peer)
    print(bench.report())
    print(f"results in {work}")


if __name__ == "__main__":
    main()
