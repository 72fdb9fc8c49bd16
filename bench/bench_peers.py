"""maestro-edge against the tools users would pick instead, at equal measured latency (issue 23).

    python bench/bench_peers.py --smoke                                      # user CNN on digits: a few minutes
    python bench/bench_peers.py --work /tmp/peers --epochs 1                 # user CNN, Fashion-MNIST
    python bench/bench_peers.py --model minilm --work /tmp/peers-minilm      # all-MiniLM-L6-v2, Lee-50

One dense start model per --model (a registry of tasks: bench/peers/cnn_task.py, minilm_task.py; each owns its
data, metrics, training and peers) reaches each budget (a fraction of its own latency, measured here: ExecuTorch
XNNPACK, 1 thread, the same export call for every method) by:
- maestro-edge: exact SVD split, LoD fine-tuning distilled from the dense model **once**, importance on the
  validation split, one host profile, then ``Fitter.fit`` per budget (solver + closed loop);
- maestro-edge + recovery (a lever): the fitted model fine-tuned per budget with ``me.recover``;
- maestro-edge + plan choice (a lever): the solver's next-best plans scored on validation, the best kept;
- SVD + solver (the same split, no LoD training) where the task runs it, and uniform rank (one rank fraction
  everywhere, on the grid);
- the task's peers (Torch-Pruning, AIMET spatial SVD): each knob scanned on a grid against latency measured side
  by side with the dense model (latency is stepped: a bisection lands far below a budget); per budget and knob
  family, the least compressing knob that meets it; the family's candidate best on validation is fine-tuned as
  long as maestro-edge's LoD ran (``me.recover``'s loop, distilled from the dense model).
Two fairness settings: equal fine-tuning per budget (above), and equal total compute for 3 budgets x 3 devices
(CPU-seconds of every step; a peer's fine-tuning is cut to the steps that make its total equal maestro-edge's).
At the end every chosen model's .pte is timed in one interleaved session and scored on the test data (95%
intervals). Every step is saved under --work; a rerun resumes where the last one stopped.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers.common import Ledger, PairedLatency  # noqa: E402
from peers.task import Peer, Task, interval  # noqa: E402

PLAN_CANDIDATES = 8   # maestro-edge + plan choice: the solver's plan and up to 8 next-best ones, scored on validation
DEVICES = 3


def user_cnn(args, work: Path) -> Task:
    from peers.cnn_task import UserCnnTask

    round_to = tuple(None if r == "none" else int(r) for r in args.round_to.split(","))
    return UserCnnTask(work, args.smoke, 1 if args.smoke else args.epochs, args.train_images, round_to)


def minilm(args, work: Path) -> Task:
    from peers.minilm_task import MiniLMTask

    return MiniLMTask(work, args.smoke, lod_steps=args.steps)


TASKS = {"user-cnn": user_cnn, "minilm": minilm}


@dataclass(frozen=True)
class Settings:
    budgets: tuple[float, ...]
    seeds: tuple[int, ...]     # fine-tuning seeds at the tightest budget
    grid_steps: int            # each knob scanned on this many steps after its slow end (the dense model)
    max_equal_compute_epochs: int | None = None   # smoke only: a cap on the equal-compute fine-tuning

    def grid(self, slow: float, fast: float) -> list[float]:
        return [round(slow + (fast - slow) * i / self.grid_steps, 4) for i in range(1, self.grid_steps + 1)]

    @classmethod
    def of(cls, args) -> "Settings":
        budgets = tuple(float(b) for b in args.budgets.split(","))
        if args.smoke:
            return cls(budgets, (0, 1), 6, max_equal_compute_epochs=3)
        return cls(budgets, tuple(range(args.seeds)), args.grid_steps)


class Bench:
    def __init__(self, work: Path, task: Task, settings: Settings, allow_busy: bool):
        from maestro_edge.latency.measure import QUICK

        self.work, self.task, self.s, self.allow_busy = work, task, settings, allow_busy
        (work / "pte").mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(work / "cost.json")
        self.rows_path = work / "rows.json"
        self.rows = json.loads(self.rows_path.read_text()) if self.rows_path.is_file() else {}
        self.dense = task.dense
        self.latency = PairedLatency(self.dense, task.example, QUICK)

    def keep(self, key: str, method: str, setting: str, budget: float | None, model, **extra) -> None:
        """A chosen model: its .pte saved for the final timing, its test scores, what it cost."""
        from maestro_edge.export.pte import export_pte

        pte = self.work / "pte" / (key.replace("|", "_").replace("/", "-") + ".pte")
        pte.write_bytes(export_pte(model, self.task.example).buffer)
        self.rows[key] = {"method": method, "setting": setting, "budget": budget, "pte": str(pte),
                          "test": self.task.test_scores(model), "val": self.task.val_score(model), **extra}
        self.rows_path.write_text(json.dumps(self.rows, indent=1))

    def seeds_at(self, budget: float) -> tuple[int, ...]:
        return self.s.seeds if budget == min(self.s.budgets) else self.s.seeds[:1]

    # ---- maestro-edge ---------------------------------------------------------------------------------------
    def maestro(self) -> None:
        import maestro_edge as me

        ckpts = {}
        for name in self.task.maestro_starts:
            path = self.work / f"{name}.lod"
            if not path.is_file():
                model = copy.deepcopy(self.dense)
                with self.ledger.measure(f"{name}:train"):
                    self.task.factorize_(model)
                    if name == "lod":
                        self.task.train_lod_(model)
                with self.ledger.measure(f"{name}:importance"):
                    table = self.task.importance(model)
                me.LoDCheckpoint.from_model(model, self.task.example, importance=table).save(path)
            ckpts[name] = me.LoDCheckpoint.load(path)
        table = self._host_table(ckpts["lod"])
        for budget in self.s.budgets:
            if "svd" in ckpts:
                self._fit("svd", "SVD + solver", ckpts["svd"], table, budget)
            self._fit("lod", "maestro-edge (LoD once)", ckpts["lod"], table, budget)
            self._recovered(ckpts["lod"], budget)
            if "plan choice" in self.task.levers:
                self._fit("lod+choice", "maestro-edge + plan choice", ckpts["lod"], table, budget, PLAN_CANDIDATES)
        self._uniform(ckpts["lod"], table)

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
        quality = UserMetric(ckpt, self.task.val_score, self.task.calibration, name=self.task.val_name)
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
            recalibrate_bn_batches_(small, self.task.calibration())
            with self.ledger.measure(f"lod+recover:finetune@{budget}/{seed}"):
                history = self.task.finetune(small, seed)
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
            recalibrate_bn_batches_(small, self.task.calibration())
            self.keep(key, "uniform rank", "both", budget, small, fraction=step / 64, note=note)

    # ---- the peers: a knob searched against measured latency, then fine-tuning per budget ---------------------
    def run_peer(self, peer: Peer) -> None:
        for budget in self.s.budgets:
            found = self._search(peer, budget)
            for seed in self.seeds_at(budget):
                key = f"{peer.key}|{budget}|{seed}"
                if key in self.rows:
                    continue
                model = peer.build(found["family"], found["knob"])
                with self.ledger.measure(f"{peer.key}:finetune@{budget}/{seed}"):
                    history = self.task.finetune(model, seed)
                self.keep(key, peer.label, "equal fine-tuning", budget, model, found=found, steps=history["steps"],
                          seed=seed, note=found.get("note", ""))

    def _scan(self, peer: Peer) -> list[dict]:
        """Every knob on each family's grid, its latency measured paired with the dense model (cached per
        architecture: many knobs give the same channel counts). Latency is stepped (XNNPACK charges channels in
        blocks), so a bisection can land far below a budget; a scan sees every step. One scan per device serves
        every budget, as one profile does for maestro-edge. Saved: a rerun does not scan again."""
        path = self.work / "search" / f"{peer.key}-scan.json"
        if path.is_file():
            return json.loads(path.read_text())
        self.latency.cache.clear()   # each peer pays for its own timings (a user runs one tool)
        with self.ledger.measure(f"{peer.key}:scan"):
            scan = [{"family": family, "knob": knob, "fraction": self.latency.fraction(peer.build(family, knob))}
                    for family in peer.families for knob in family["grid"]]
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(scan, indent=1))
        return scan

    def _search(self, peer: Peer, budget: float) -> dict:
        """Per knob family (round_to, AIMET mode), the least compressing knob of the scan whose measured latency
        meets the budget; of those, the best on validation before fine-tuning. Where none meets it, the fastest
        candidate, said so. Saved."""
        path = self.work / "search" / f"{peer.key}-{budget}.json"
        if path.is_file():
            return json.loads(path.read_text())
        scan = self._scan(peer)
        with self.ledger.measure(f"{peer.key}:choose@{budget}"):
            met = []
            for family in peer.families:
                meeting = [c for c in scan if c["family"] == family and c["fraction"] <= budget]
                if meeting:   # the grid runs from the slow end: the first one meeting it compresses least
                    met.append(dict(meeting[0], val_before_finetune=self.task.val_score(peer.build(family,
                                                                                            meeting[0]["knob"]))))
            if met:
                best = max(met, key=lambda c: c["val_before_finetune"])
            else:
                best = dict(min(scan, key=lambda c: c["fraction"]))
                best["note"] = f"budget below its fastest model ({best['fraction']:.0%} of dense in the scan)"
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
        totals = {"maestro-edge (LoD once)": total, "maestro-edge + recovery": total + recovery}
        if "plan choice" in self.task.levers:
            choice = devices * sum(c.cpu(f"lod+choice:fit@{b}") - c.cpu(f"lod:fit@{b}") for b in self.s.budgets)
            totals["maestro-edge + plan choice"] = total + choice
        return totals

    def equal_compute(self, peer: Peer) -> None:
        """The peer's fine-tuning cut (or extended) so that its total for 3 budgets x 3 devices equals
        maestro-edge's (LoD once); a scan per device and a choice per budget and device are paid first."""
        c, runs = self.ledger, DEVICES * len(self.s.budgets)
        self.totals = {**getattr(self, "totals", {}), **self.maestro_totals()}
        maestro_total = self.totals["maestro-edge (LoD once)"]
        self.totals[peer.label] = self.peer_total(peer.key)
        for budget in self.s.budgets:
            key, tuned = f"{peer.key}|{budget}|equal-compute", self.rows[f"{peer.key}|{budget}|0"]
            allowed = (maestro_total - DEVICES * c.cpu(f"{peer.key}:scan")) / runs - c.cpu(f"{peer.key}:choose@{budget}")
            per_step = c.cpu(f"{peer.key}:finetune@{budget}/0") / max(1, tuned["steps"])
            steps = max(0, int(allowed / per_step))
            if self.s.max_equal_compute_epochs is not None:   # smoke: a tiny model makes the allowance huge
                steps = min(steps, self.s.max_equal_compute_epochs * self.task.steps_per_finetune())
            if key in self.rows:
                continue
            found = tuned["found"]
            model = peer.build(found["family"], found["knob"])
            history = self.task.finetune(model, 0, max_steps=steps) if steps else {"steps": 0}
            self.keep(key, peer.label, "equal compute", budget, model, found=found, steps=history["steps"],
                      allowed_cpu_s=round(allowed, 1), note=tuned.get("note", ""))

    # ---- the end: every chosen model timed together ---------------------------------------------------------
    def report(self) -> str:
        from maestro_edge.latency.measure import Protocol, time_programs

        spec = self.task.example
        programs = {"dense": (self.latency.dense_pte, spec)}
        programs.update({key: (Path(row["pte"]).read_bytes(), spec) for key, row in self.rows.items()})
        print(f"timing {len(programs)} programs side by side (interleaved rounds, 1 thread)")
        timings = time_programs(programs, Protocol(threads=1))
        dense_ms = timings["dense"].p50_ms
        dense_scores = self.task.test_scores(self.dense)
        metrics = self.task.metrics
        lines = [f"dense: {dense_ms:.4f} ms measured, " + ", ".join(f"{m} {interval(dense_scores[m])}"
                                                                      for m in metrics), "",
                 "| budget | method | setting | seed | measured / dense | " + " | ".join(f"{m} [95%]" for m in metrics)
                 + " | val | steps | note |", "|---|---|---|---|---|" + "---|" * len(metrics) + "---|---|---|"]
        order = {"both": 0, "equal fine-tuning": 1, "equal compute": 2}
        for key, row in sorted(self.rows.items(), key=lambda kv: (-kv[1]["budget"], order[kv[1]["setting"]],
                                                                   kv[1]["method"], kv[0])):
            seed = key.rsplit("|", 1)[1]
            lines.append(f"| {row['budget']:.0%} | {row['method']} | {row['setting']} | {seed} | "
                         f"{timings[key].p50_ms / dense_ms:.1%} | {self._scores(row)} | {row['val']:.4f} | "
                         f"{row.get('steps', '-')} | {row.get('note', '')} |")
        totals = getattr(self, "totals", None) or self._ledger_totals()
        if totals:
            lines += ["", "CPU-seconds for 3 budgets x 3 devices (every step; a device's measurements cost what the "
                      "host's did):"] + [f"- {m}: {v:.0f} s" for m, v in totals.items()]
        text = "\n".join(lines)
        (self.work / "report.md").write_text(text + "\n")
        return text

    def _scores(self, row: dict) -> str:
        scores = row["test"] if "accuracy" not in row["test"] else {"test accuracy": row["test"]}   # older rows
        return " | ".join(interval(scores[m]) for m in self.task.metrics)

    def _ledger_totals(self) -> dict[str, float]:
        """The CPU-second totals from the saved ledger (a --report-only run), for what is complete in it."""
        totals = {}
        try:
            totals.update(self.maestro_totals())
        except KeyError:
            return totals
        for peer_key in sorted({k.split("|")[0] for k in self.rows if k.startswith(("tp-", "aimet-"))}):
            label = next(r["method"] for k, r in self.rows.items() if k.startswith(peer_key + "|"))
            with contextlib.suppress(KeyError):   # only what is complete
                totals[label] = self.peer_total(peer_key)
        return totals

    def peer_total(self, peer_key: str) -> float:
        """A peer's CPU-seconds for 3 budgets x 3 devices: a scan per device, a choice and a fine-tune per budget
        and device."""
        c = self.ledger
        return DEVICES * (c.cpu(f"{peer_key}:scan") + sum(c.cpu(f"{peer_key}:choose@{b}") + c.cpu(
            f"{peer_key}:finetune@{b}/0") for b in self.s.budgets))

    @property
    def dense_ms(self) -> float:
        """The dense model's latency (timed alone, interleaved rounds, at the run's start): budgets are fractions."""
        path = self.work / "dense_ms.json"   # saved: a resumed run keeps the budgets it started with
        if not path.is_file():
            from maestro_edge.latency.measure import Protocol, time_programs

            timing = time_programs({"dense": (self.latency.dense_pte, self.task.example)}, Protocol())["dense"]
            path.write_text(json.dumps(timing.p50_ms))
        return json.loads(path.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(TASKS), default="user-cnn", help="the dense start model and its data")
    parser.add_argument("--work", type=Path, default=None, help="folder for every step's results (resumable)")
    parser.add_argument("--smoke", action="store_true", help="tiny data and training: a few minutes")
    parser.add_argument("--epochs", type=int, default=1, help="user-cnn: fine-tuning epochs (LoD once, each peer "
                                                              "per budget)")
    parser.add_argument("--steps", type=int, default=400, help="minilm: fine-tuning steps (LoD once, each peer per "
                                                               "budget)")
    parser.add_argument("--budgets", default="0.75,0.5,0.35")
    parser.add_argument("--seeds", type=int, default=2, help="fine-tuning seeds at the tightest budget")
    parser.add_argument("--grid-steps", type=int, default=19, help="knob values scanned per peer family")
    parser.add_argument("--train-images", type=int, default=None, help="user-cnn: the first N training images only")
    parser.add_argument("--round-to", default="none,8,16,32", help="user-cnn: Torch-Pruning round_to values")
    parser.add_argument("--report-only", action="store_true", help="time and print the models kept in --work")
    parser.add_argument("--allow-busy", action="store_true", help="profile even beside busy processes (flagged)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = Settings.of(args)
    bench = Bench(work, TASKS[args.model](args, work), settings, args.allow_busy)
    if args.report_only:   # time and print what an interrupted run kept
        print(bench.report())
        return
    bench.maestro()
    for peer in bench.task.peers(settings.grid, work):
        bench.run_peer(peer)
        bench.equal_compute(peer)
    print(bench.report())
    print(f"results in {work}")


if __name__ == "__main__":
    main()
