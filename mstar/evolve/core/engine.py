"""The evolution engine (docs/ARCHITECTURE.md#evolution): seeds, generations of proposals, cascade evaluation, islands,
archive, stops, and the final val/test step.

Resume is replay. The loop always starts at the seeds and walks the generations in order; every
proposal already in the store is reused (not re-proposed), every finished evaluation is reused (not
re-run), and decisions already recorded are applied as recorded. Since each proposal has its own
random stream (see ``breed``) and the population is a pure function of the order of additions, the
replayed state equals the state the killed run had, and the run goes on exactly as it would have.

A generation: propose ``children_per_gen`` children from the population as it stood at the start of
the generation (slot s works on island s mod islands), screen them all, give the survivors the rest
of train, then add the accepted ones in slot order; migrate every ``migrate_every`` generations.
Batching a generation's evaluations this way is what lets a parallel executor fill its workers.

An infrastructure fault (the Docker engine, a Ray node or the broker went away) is waited out by the
executor (``mstar.faults``); one that outlasts ``infra_wait_s`` stops the run like a kill would:
nothing more is decided, every finished evaluation is stored, and ``--resume`` replays to the same point.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mstar.broker import Backend, LiteLLMBackend
from mstar.embedders import default_embedder
from mstar.errors import InfrastructureError, UsageError
from mstar.evaluate import EvalConfig
from mstar.evolve.core.breed import Breeder, program_id
from mstar.evolve.core.config import EvolveConfig, settle_embedder
from mstar.evolve.core.final import finish
from mstar.evolve.core.live import View
from mstar.evolve.core.run_state import RunState, write_best
from mstar.evolve.core.seeds import parts_bin, seed_records
from mstar.evolve.core.stops import StopNow, Stopper
from mstar.evolve.core.transfer import attach, load_transfer, trained_specs
from mstar.evolve.execution.cascade import Evaluator, Interrupted, Target, choose_episodes, passes_screen
from mstar.evolve.execution.executor import Executor, make_executor
from mstar.evolve.operators.registry import load_operators
from mstar.evolve.store.ledger import Ledger
from mstar.evolve.store.run_store import ProposalRecord, RunStore
from mstar.evolve.store.scores import ScoreBook
from mstar.evolve.strategies.archive import Point
from mstar.evolve.strategies.base import SearchView
from mstar.evolve.strategies.defaults import Strategies
from mstar.evolve.strategies.novelty import normalise_source
from mstar.evolve.strategies.population import Population
from mstar.faults import FaultPause
from mstar.harness.loader import load_program
from mstar.scoring.aggregate import LLM_METRICS
from mstar.tasks.joint import cap_train, choose_per_suite
from mstar.toolkit import Toolkit

if TYPE_CHECKING:  # the cache is imported lazily where it is made
    from mstar.evolve.store.result_cache import ResultCache

# Missed probes are read again at 4x the budget to tell "cut by the budget" from "not retrieved".
DIAGNOSE_FACTOR = 4


def _priced(model: str) -> bool:
    from mstar.broker import _litellm

    try:
        p, c = _litellm().cost_per_token(model=model, prompt_tokens=1000, completion_tokens=1000)
        return (float(p) + float(c)) > 0
    except Exception:  # noqa: BLE001 - unknown model: no price
        return False


class Engine:
    def __init__(self, config: EvolveConfig, run_dir: Path, *, view: View | None = None,
                 llm_backend: Backend | None = None, operators: dict[str, Any] | None = None,
                 executor: Executor | None = None, suite: Any = None, strategies: Strategies | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.view = view or View(live=False)
        self._llm_backend = llm_backend
        self._operators = operators
        self._executor = executor
        self._suite = suite
        # The search's policies (parents, behaviour key, operator choice, migration, island reset, archive).
        self.strategies = strategies or Strategies.from_config(config)
        self.stop_reason: str | None = None
        self.t0 = time.monotonic()
        self._seeds_pending: dict[str, str] = {}  # seed id -> name, while its train score is incomplete

    # --- setup --------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.config
        # Everything that can be wrong with the request is checked before the run directory is made.
        if self._suite is None:
            from mstar.tasks.joint import build_suite

            self._suite = build_suite(cfg.task, cfg.data, cfg.task_opts, cfg.suites)
        self.splits = {s: self._suite.episodes(s) for s in ("train", "val", "test")}
        self.splits["train"] = cap_train(self.splits["train"], cfg.train_episodes, getattr(self._suite, "group_of", None))
        if not self.splits["train"]:
            raise UsageError(f"--task {cfg.task}: the train split is empty; evolution needs train episodes")
        self.transfer = load_transfer(cfg.transfer, trained_specs(cfg))  # {task: (split used, episodes)}
        backend = self._llm_backend or (
            LiteLLMBackend(cfg.model, cfg.api_base, timeout_s=cfg.llm.timeout_s) if cfg.model else None)
        self._has_llm = backend is not None
        if cfg.metric in LLM_METRICS and not self._has_llm:
            raise UsageError(f"--metric {cfg.metric}: needs the answer step, i.e. an LLM (pass --model)")
        ops = self._operators if self._operators is not None else load_operators(cfg.operators)
        usable = {n: op for n, op in ops.items() if n in cfg.operators}
        for n, op in list(usable.items()):
            if getattr(op, "needs_llm", False) and not self._has_llm:
                self.view.log(f"operator {n}: needs an LLM, left out of the mix (pass --model)")
                del usable[n]
        if not usable:
            raise UsageError("--operators: no usable operator (the LLM operators need --model)")
        self.seeds = seed_records(cfg.seeds, self._has_llm, self.view.log)
        cfg.llm_uses = self._llm_uses(usable) if self._has_llm else {}
        if self._has_llm and cfg.model and not _priced(cfg.model):
            self.view.log(f"--model {cfg.model}: litellm has no price for it (a local server?): its calls are "
                          "recorded at $0, so --budget-usd and the cost objective cannot see them; "
                          + ("--budget-tokens binds" if cfg.stops.budget_tokens else "give it --budget-tokens"))
        # One embedder for the whole run (see EvolveConfig.embedder); settled before the config is saved.
        cfg.embedder = settle_embedder(cfg.embedder, resumed=(self.run_dir / "config.json").exists())

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.run_dir / ".lock", "w")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"{self.run_dir}: another mstar process is running this run") from None
        self.store = RunStore(self.run_dir)
        if not (self.run_dir / "config.json").exists():
            cfg.save(self.run_dir)
            self.store.set_state("metric_version", cfg.metric_version)
        self.stopper = Stopper(cfg.stops, self.run_dir)
        self.ids = {s: [e.id for e in eps] for s, eps in self.splits.items()}
        episodes = {e.id: e for eps in self.splits.values() for e in eps}
        attach(self, episodes)  # the --transfer suites' episodes, scored in the final step
        self._train_probes = {e.id: len(e.probes) for e in self.splits["train"]}
        self.screen_ids, self.minibatch_ids = choose_per_suite(choose_episodes, self.ids["train"],  # joint: per suite
                                                               getattr(self._suite, "group_of", None), cfg.seed,
                                                               cfg.screen_episodes, cfg.minibatch_episodes,
                                                               probes=self._train_probes,
                                                               screen_probes=cfg.screen_probes,
                                                               minibatch_probes=cfg.minibatch_probes)
        self._hint_thin_sets(cfg)
        self.ledger = Ledger(self.store, backend, cfg.model or "", cfg.stops.budget_usd, cfg.stops.budget_tokens,
                             cfg.llm, cfg.run_id)
        embedder = default_embedder(prefer=cfg.embedder)  # the Ray executor rebuilds it by name in each worker
        toolkit = Toolkit(llm=self.ledger.fn("harness") if self.ledger.available else None, embed=embedder,
                          embedder_name=embedder.name, route=self.ledger.route if self.ledger.available else None,
                          limits=cfg.llm)
        self.faults = FaultPause(cfg.infra_wait_s, log=self.view.log, on_event=self.store.event)
        if self._executor is None:
            from mstar.sandbox.registry import get_backend

            # Ray rebuilds the backend in each worker from its name (a live Docker client cannot travel).
            extra: dict[str, Any] = ({"workers": cfg.workers, "address": cfg.ray_address, "run_dir": str(self.run_dir)}
                                     if cfg.executor == "ray" else {})
            backend = cfg.sandbox if cfg.executor == "ray" else get_backend(cfg.sandbox)
            self._executor = make_executor(cfg.executor, episodes=episodes, backend=backend,
                                           toolkit=toolkit, config=self._eval_config(), meter=self.ledger,
                                           labels={"mstar.run": cfg.run_id}, faults=self.faults, **extra)
        self.book = ScoreBook(cfg.metric, group=getattr(self._suite, "group_of", None))
        self.book.load(self.store.evaluation_rows())
        self.evals_base = self.store.count_episodes() + self.store.minibatch_evals()
        self.programs = {p.id: p for p in self.store.programs()}
        cache = self._seed_cache(cfg)
        self.evaluator = Evaluator(self.store, self.book, self._executor, episodes, cfg.budget, self._should_stop,
                                   on_result=self._on_result, on_diagnosis_error=self._diagnosis_failed,
                                   cache=cache, cacheable=frozenset(r.id for r in self.seeds).__contains__)
        self.evaluator.abortable = self.stopper.abortable
        self.stopper.can_abort = lambda: self.store._depth == 0  # never inside a store transaction
        st = self.strategies
        self.population = Population(cfg.islands, cfg.island_size, prefer_shorter=cfg.prefer_shorter)
        self.archive = st.archive()
        self.novelty = st.novelty(cfg.novelty_threshold)
        self.behaviour = st.behaviour(self.book, self.screen_ids)
        search = SearchView(self.population, self.archive,
                            lambda pid: self.book.probe_values(pid, "train", self.ids["train"]))
        self.breeder = Breeder(cfg, usable, self._parts_bin(), self.programs, self.book, self.ids["train"],
                               self.screen_ids, self.population, search, st.parents, st.operators, self.novelty,
                               self._score_minibatch,
                               lambda purpose: self.ledger.fn(purpose) if self.ledger.available else None)
        self.breeder.sandbox = self._child_sandbox()
        self.best_id: str | None = None
        self.behaviours: dict[Hashable, str] = {}  # screen behaviour -> first program
        self.stale = 0
        self.view.update(run_id=cfg.run_id, task=cfg.task, metric=cfg.metric, islands=[0] * cfg.islands)

    THIN = 10  # fewer probes than this in a suite's screen or minibatch: the log suggests the probe floors

    def _hint_thin_sets(self, cfg: EvolveConfig) -> None:
        """Say when a suite's screen or tune minibatch holds too few probes to tell programs apart (one
        LongMemEval question per episode): the probe floors are opt-in, so the run names them."""
        group = getattr(self._suite, "group_of", None) or (lambda _e: cfg.task)
        for what, ids, flag, given in (("screen", self.screen_ids, "--screen-probes", cfg.screen_probes),
                                       ("tune minibatch", self.minibatch_ids, "--minibatch-probes", cfg.minibatch_probes)):
            held: dict[str, int] = {}
            for e in ids:
                held[group(e)] = held.get(group(e), 0) + self._train_probes.get(e, 0)
            thin = {k: n for k, n in held.items() if n < self.THIN}
            if thin and given is None and len(self.ids["train"]) > len(ids):
                self.view.log(f"the {what} holds {', '.join(f'{n} probe(s) of {k}' for k, n in thin.items())}: too few "
                              f"to tell programs apart there; {flag} N grows it to N probes per suite (docs/EVOLVE.md)")

    def _seed_cache(self, cfg: EvolveConfig) -> ResultCache | None:
        """Seed results kept across the runs of one runs directory (store/result_cache.py), or None: never
        with a model (its replies are not a function of the episode)."""
        if not cfg.seed_cache or self._has_llm or os.environ.get("MSTAR_NO_CACHE", "") not in ("", "0"):
            return None
        import mstar
        from mstar.evolve.store.result_cache import ResultCache, context_digest

        context = context_digest(eval=self._eval_config().model_dump(), embedder=cfg.embedder, sandbox=cfg.sandbox,
                                 metric_version=cfg.metric_version, mstar=mstar.__version__)
        try:
            return ResultCache(self.run_dir.parent / ".cache" / "seed_results.db", context)
        except (sqlite3.Error, OSError) as e:  # an unusable cache costs the reuse, never the run
            self.view.log(f"seed cache unavailable ({e}); seeds are scored afresh")
            return None

    def _parts_bin(self) -> dict[str, str]:
        """What `structural` may borrow from (a method so a caller can narrow it: bench/search_ablation.py)."""
        return parts_bin(self.seeds, self._has_llm)

    def _child_sandbox(self) -> Any:
        """The backend the operators smoke-test children in: the same kind as the evaluations' (the
        one --sandbox chose, resolved once), its own instance so breeding never waits on an evaluation."""
        from mstar.sandbox.registry import get_backend, settle

        name, _ = settle(self.config.sandbox)
        return get_backend(name, **({} if name == "inline" else {"spares": 1}))

    def _llm_uses(self, usable: dict[str, Any]) -> dict[str, list[str]]:
        """What --model switches on in this run, for config.json and the log: nothing is implicit."""
        seeds = []
        for r in self.seeds:
            prog = load_program(r.name)
            on = [k for k, v in r.knobs.items() if k.startswith("llm_") and v is True]
            if prog.needs_llm or on:
                seeds.append(r.name + (f" ({', '.join(on)})" if on else ""))
        scoring = {"qa_f1": ["answer step"], "qa_judge": ["answer step", "judge"]}.get(self.config.metric, [])
        uses = {"operators": sorted(n for n, op in usable.items() if getattr(op, "needs_llm", False)),
                "seeds": seeds, "scoring": scoring}
        self.view.log("--model is used by: " + "; ".join(f"{k} {', '.join(v) or '-'}" for k, v in uses.items()))
        return uses

    def _eval_config(self) -> EvalConfig:
        cfg = self.config
        qa = ("judge" if cfg.metric == "qa_judge" else "f1") if cfg.metric in LLM_METRICS else "off"
        return EvalConfig(budget=cfg.budget, diagnose_factor=DIAGNOSE_FACTOR, qa=qa)

    # --- plumbing -----------------------------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        return self.evals_base + self.evaluator.evaluations

    def _should_stop(self) -> str | None:
        if self.stop_reason is None:
            r = self.stopper.reason(self.evaluations, self.ledger.spent, self.ledger.tokens)
            if r is None and self.ledger.halted:
                r = f"model unreachable: {self.ledger.halted}"
            if r is None and (self.ledger.exhausted or self.evaluator.budget_stop):
                r = (f"model unreachable: {self.evaluator.budget_stop}" if "not answering" in
                     (self.evaluator.budget_stop or "") else f"budget spent ({self.ledger.spent_text()})")
            if r:
                self.stop_reason = r
                self.view.update(stop=r)
                self.view.log(f"stopping: {r}; finishing what is in flight")
        return self.stop_reason

    def _on_result(self, jr: Any) -> None:
        self.view.tick()
        self.view.update(evaluations=self.evaluations, **self._llm_use())
        if jr.job.program_id in self._seeds_pending and jr.job.split == "train":
            self._seed_progress(jr.job.program_id)

    def _seed_progress(self, pid: str) -> None:
        """A seed's line the moment its train score is complete: the seed phase of a large suite takes
        minutes, and a run that printed nothing until every seed was scored looked hung."""
        if not all(self.book.has(pid, "train", e) for e in self.ids["train"]):
            return
        name = self._seeds_pending.pop(pid)
        done = len(self.seeds) - len(self._seeds_pending)
        self.view.log(f"seed {name:<24} train {self.config.metric} {self._train(pid):.4f}  "
                      f"({done}/{len(self.seeds)} seeds, {time.monotonic() - self.t0:.0f} s)")

    def _llm_use(self) -> dict[str, Any]:
        """Tokens and USD for the live view from the run's ledger table, which every writer shares (this
        process's operators and scoring, the Ray broker actor's harness calls): no counter can miss one."""
        tokens, usd = self.store.llm_totals()
        return {"tokens": max(tokens, self.ledger.tokens), "usd": max(usd, self.ledger.spent)}

    def _diagnosis_failed(self, pid: str, what: str) -> None:
        """Every failure is an event of the run; the log says it the first time (it is likely to repeat)."""
        self.store.event("diagnosis_error", {"program": pid, "error": what[:2000]})
        if self.evaluator.diagnosis_errors == 1:
            self.view.log(f"{what[:300]} (the operators get no failure diagnosis for it; every such failure is "
                          "a diagnosis_error event in run.db)")

    def _target(self, pid: str) -> Target:
        rec = self.programs[pid]
        return Target(pid, rec.source, rec.knobs)

    def _score_minibatch(self, source: str, knobs: dict[str, Any]) -> float:
        from mstar.harness.knobs import resolve
        from mstar.harness.loader import from_source

        prog = from_source(source, name="trial")
        values = resolve(prog.knob_specs, knobs)
        target = Target(program_id(source, values, prog.knob_specs), source, values)
        return self.evaluator.score_minibatch(target, self.minibatch_ids)

    def _train(self, pid: str) -> float | None:
        return self.book.score(pid, "train", self.ids["train"])

    def _size(self, pid: str) -> int:
        """A program's length for ``prefer_shorter``: its normalised code (comments and layout do not count)."""
        return len(normalise_source(self.programs[pid].source))

    def _admit(self, island: int, pid: str) -> bool:
        """Into the population and the archive; returns whether it is a new overall best."""
        st = self.book.stats(pid, "train", self.ids["train"])
        assert st is not None
        key = self.behaviour.key(pid)
        if key is not None:
            self.behaviours.setdefault(key, pid)
        shorter = self.config.prefer_shorter
        self.population.add(island, pid, st.quality, self._size(pid) if shorter else None)
        self.archive.add(Point(pid, st.quality, st.tokens, st.cost))
        best = (self._train(self.best_id) or 0.0) if self.best_id else None
        if best is None or st.quality > best + 1e-12 or (
                shorter and abs(st.quality - best) <= 1e-9 and self._size(pid) < self._size(self.best_id or pid)):
            self.best_id = pid
            return True
        return False

    def _refresh_view(self, generation: int) -> None:
        self.view.update(**self._llm_use())
        self.view.update(generation=generation, best=self._train(self.best_id) if self.best_id else None,
                         best_id=self.best_id or "", median=self.population.median(), archive=len(self.archive),
                         islands=[len(i) for i in self.population.islands])

    def _write_best(self, note: str) -> None:
        write_best(self.store, self.config.run_id, self.programs[self.best_id] if self.best_id else None, note)

    def run_state(self) -> RunState:
        """What the final step is handed: the search's results, its store and its evaluator."""
        return RunState(config=self.config, run_dir=self.run_dir, store=self.store, book=self.book,
                        evaluator=self.evaluator, view=self.view, ids=self.ids, programs=self.programs,
                        seeds=self.seeds, stop_reason=self.stop_reason, t0=self.t0,
                        evaluations=lambda: self.evaluations, stopper=self.stopper, best_id=self.best_id,
                        suites=list(getattr(self._suite, "labels", None) or []),
                        transfer={task: used for task, (used, _) in self.transfer.items()})

    # --- the run ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self._setup()  # nothing to release when it fails: the store and lock are taken last
        self.stopper.install()
        try:
            self.store.event("session", {"resumed": self.store.get_state("generation_done") is not None,
                                         "pid": os.getpid()})
            if self._seed_phase():
                self._generations()
            state = self.run_state()
            summary = finish(state)
            self.best_id = state.best_id
            return summary
        except InfrastructureError as e:
            self.stop_reason = f"infrastructure fault: {e}"
            raise InfrastructureError(e.what, f"{e.detail}. The run stopped; every finished evaluation is stored. "
                                              f"Continue with: mstar evolve --resume {self.run_dir}") from None
        finally:
            self.stopper.uninstall()
            self._executor.close()
            close = getattr(self.breeder.sandbox, "close", None)
            if close is not None:
                close()
            self.store.set_state("wall_s", self.store.get_state("wall_s", 0.0) + (time.monotonic() - self.t0))
            if self.evaluator.cache is not None:
                if self.evaluator.cache.hits:
                    self.view.log(f"seed cache: {self.evaluator.cache.hits} seed evaluations reused from earlier runs "
                                  f"({self.evaluator.cache.path})")
                self.evaluator.cache.close()
            self.store.close()
            self._lock.close()

    def _seed_phase(self) -> bool:
        self.view.update(phase="seeds")
        for rec in self.seeds:
            if rec.id not in self.programs:
                self.store.add_program(rec)
                self.programs[rec.id] = rec
        # Seeds scored in an earlier session of the run were shown then; the rest get a line as they finish.
        fresh = self.store.get_state("generation_done") is None
        self._seeds_pending = {r.id: r.name for r in self.seeds} if fresh else {}
        for r in self.seeds:
            if r.id in self._seeds_pending:
                self._seed_progress(r.id)
        if not self.evaluator.ensure([self._target(r.id) for r in self.seeds], "train", self.ids["train"]):
            return False
        for rec in self.seeds:
            for island in range(self.config.islands):
                self._admit(island, rec.id)
            self.novelty.add(rec.id, rec.source, rec.knobs)
        done = self.store.get_state("generation_done")
        if done is None:
            with self.store.tx():
                self.store.event("seeds", {r.name: self._train(r.id) for r in self.seeds})
                self.store.set_state("generation_done", 0)
        self._write_best("best on train so far")
        self._refresh_view(0)
        return True

    def _generations(self) -> None:
        g = 0
        while True:
            r = self.stopper.at_generation_end(g, self.stale) or self._should_stop()
            if r:
                self.stop_reason = self.stop_reason or r
                return
            g += 1
            self.view.update(phase=f"generation {g}")
            if not self._generation(g):
                return

    def _generation(self, g: int) -> bool:
        cfg = self.config
        kids: list[ProposalRecord] = []
        for slot in range(cfg.children_per_gen):
            prop = self.store.get_proposal(g, slot)
            fresh = prop is None
            if prop is None:
                if self._should_stop():
                    return False
                self.evaluator.minibatch_evals = 0
                try:
                    with self.stopper.abortable():  # an operator's model call may take minutes
                        prop, rec = self.breeder.propose(g, slot)
                except (Interrupted, StopNow):
                    self._should_stop()
                    return False
                prop.minibatch_evals = self.evaluator.minibatch_evals
                self.store.put_proposal(prop, rec)
                if rec is not None:
                    self.programs.setdefault(rec.id, rec)
            self.population.note_child(prop.parents)
            if prop.program is not None and prop.outcome != "rejected-novelty":
                rec = self.programs[prop.program]
                self.novelty.add(rec.id, rec.source, rec.knobs)
            if fresh and prop.outcome != "pending":
                self.view.outcome(f"{g}.{slot}", prop.operator, prop.outcome, prop.reason)
            kids.append(prop)
        if not self._evaluate_children(g, [p for p in kids if p.outcome == "pending"]):
            return False
        return self._end_generation(g, kids)

    def _decide(self, g: int, p: ProposalRecord, outcome: str, reason: str) -> None:
        p.outcome, p.reason = outcome, reason
        status = {"accepted": "accepted", "failed": "failed"}.get(outcome, "rejected")
        if self.store.decide(p, status, reason if outcome == "failed" else None):
            self.programs[p.program].status = status
            self.view.outcome(f"{g}.{p.slot}", p.operator, outcome, reason)

    def _evaluate_children(self, g: int, pending: list[ProposalRecord]) -> bool:
        if not self.evaluator.ensure([self._target(p.program) for p in pending], "train", self.screen_ids):
            return False
        survivors = []
        seen = dict(self.behaviours)
        for p in pending:
            st = self.book.stats(p.program, "train", self.screen_ids)
            p.screen = st.quality
            if st.failed_episodes == len(self.screen_ids):
                self._decide(g, p, "failed", f"{st.failure}: {st.detail}".strip()[:300])
                continue
            key = self.behaviour.key(p.program)
            twin = seen.get(key) if key is not None else None
            if twin is not None:
                # A neutral variant (strategies/behaviour.py): letting them in fills islands with clones
                # of one program and stalls the search.
                self._decide(g, p, "rejected-novelty",
                             f"behaves like {twin} on the screen ({self.behaviour.describe(p.program)})")
                continue
            if key is not None:
                seen[key] = p.program
            parents = [self.book.score(q, "train", self.screen_ids) or 0.0 for q in p.parents]
            if not passes_screen(st.quality, parents, self.config.cascade_margin):
                self._decide(g, p, "rejected-cascade",
                             f"screen {st.quality:.4f} < parent {max(parents):.4f} - {self.config.cascade_margin:g}")
                continue
            survivors.append(p)
        rest = [e for e in self.ids["train"] if e not in self.screen_ids]
        if not self.evaluator.ensure([self._target(p.program) for p in survivors], "train", rest):
            return False
        for p in survivors:
            p.train = self._train(p.program)
            parent = max((self._train(q) or 0.0) for q in p.parents)
            self._decide(g, p, "accepted", f"train {p.train:.4f} (parent {parent:.4f}, screen {p.screen:.4f})")
        return True

    def _end_generation(self, g: int, kids: list[ProposalRecord]) -> bool:
        improved = False
        for p in kids:
            for q in p.parents:
                self.breeder.tried.setdefault(q, []).append(p)
            if p.outcome == "accepted":
                improved = self._admit(p.island, p.program) or improved
        migrations = self.strategies.migration.migrate(self.population, g)
        resets = self.strategies.island_reset.reset(self.population, g)
        self.stale = 0 if improved else self.stale + 1
        if improved:
            self._write_best("best on train so far")
        if g > self.store.get_state("generation_done", -1):
            counts: dict[str, int] = {}
            for p in kids:
                counts[p.outcome] = counts.get(p.outcome, 0) + 1
            best = self._train(self.best_id) if self.best_id else None
            with self.store.tx():
                for m in migrations:
                    self.store.event("migration", {"generation": g, "program": m.program, "from": m.source, "to": m.target})
                for r in resets:
                    self.store.event("island_reset", {"generation": g, "island": r.island, "seeded_with": r.seeded_with,
                                                      "dropped": r.dropped})
                if improved:
                    self.store.event("best", {"generation": g, "program": self.best_id, "train": best})
                self.store.event("generation", {"generation": g, "best": best, "best_id": self.best_id,
                                                "median": self.population.median(), "outcomes": counts,
                                                "evaluations": self.evaluations, "archive": len(self.archive),
                                                "islands": self.population.islands})
                self.store.set_state("generation_done", g)
            self._refresh_view(g)
            self.view.log(self.view.status_line())
        else:
            self._refresh_view(g)
        return True
