"""Making one child: pick an operator and parents, show the operator what is known about them, check
what comes back (valid program, valid knobs, novel), and turn it into store records.

Each (generation, slot) draws from its own random stream, ``Random(f"{seed}:{generation}:{slot}")``,
so a proposal never depends on how many numbers an earlier one consumed: a resumed run that reuses
stored proposals and makes the missing ones gets exactly what an uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mstar.errors import BudgetExceeded, HarnessError, InfrastructureError
from mstar.evolve.core.config import EvolveConfig
from mstar.evolve.execution.cascade import Interrupted
from mstar.evolve.operators.base import FailedProbe, LineageEntry, OperatorContext, OperatorFailed, ParentView
from mstar.evolve.store.run_store import ProgramRecord, ProposalRecord
from mstar.evolve.store.scores import ScoreBook
from mstar.evolve.strategies.base import OperatorChoice, ParentPolicy, SearchView
from mstar.evolve.strategies.novelty import NoveltyFilter
from mstar.evolve.strategies.population import Population
from mstar.harness.knobs import KnobsError, defaults, resolve
from mstar.harness.loader import from_source, program_hash

LINEAGE_DEPTH = 8
RECENT_CHILDREN = 6


def program_id(source: str, knobs: dict[str, Any], specs: dict[str, Any]) -> str:
    """The source's hash when it runs with its own defaults; else source and knob values hashed together."""
    if knobs == defaults(specs):
        return program_hash(source)
    blob = source + "\n#knobs:" + json.dumps(knobs, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def slot_rng(seed: int, generation: int, slot: int) -> random.Random:
    return random.Random(f"{seed}:{generation}:{slot}")


@dataclass
class Breeder:
    config: EvolveConfig
    operators: dict[str, Any]
    seeds: dict[str, str]  # seed name -> source: the parts bin of `structural`
    programs: dict[str, ProgramRecord]
    book: ScoreBook
    train_ids: list[str]
    screen_ids: list[str]
    population: Population
    search: SearchView
    parents: ParentPolicy
    choose_operator: OperatorChoice
    novelty: NoveltyFilter
    score_minibatch: Callable[[str, dict[str, Any]], float]
    llm_for: Callable[[str], Callable[..., str] | None]
    # decided proposals by parent id, for the lineage log ("what was tried from here and how it went")
    tried: dict[str, list[ProposalRecord]] = field(default_factory=dict)
    # The run's sandbox backend: operators smoke-test their children in it (mstar.harness.validate).
    sandbox: Any = None

    # --- what an operator is shown ----------------------------------------------------------------
    def train_score(self, pid: str) -> float | None:
        return self.book.score(pid, "train", self.train_ids)

    def view(self, pid: str, rng: random.Random, island: int) -> ParentView:
        rec = self.programs[pid]
        st = self.book.stats(pid, "train", self.train_ids)
        failures = []
        pool = self.book.failures(pid, "train", self.train_ids)
        k = min(self.config.failures_per_parent, len(pool))
        for d in rng.sample(pool, k) if k else []:
            try:
                failures.append(FailedProbe.model_validate(d))
            except ValueError:
                continue
        return ParentView(id=pid, name=rec.name, source=rec.source, knobs=dict(rec.knobs), island=island,
                          score=st.quality if st else None, by_category=st.by_category if st else {},
                          failures=failures, lineage=self.lineage(pid))

    def lineage(self, pid: str) -> list[LineageEntry]:
        """Ancestors (oldest first) with their train scores, then the latest children tried from
        ``pid`` with screen scores against the parent's: regressions are visible either way."""
        chain: list[LineageEntry] = []
        cur = self.programs.get(pid)
        while cur is not None and len(chain) < LINEAGE_DEPTH:
            parent = self.programs.get(cur.parents[0]) if cur.parents else None
            chain.append(LineageEntry(program_id=cur.id, operator=cur.operator, score=self.train_score(cur.id),
                                      parent_score=self.train_score(parent.id) if parent else None,
                                      note=cur.note[:300]))
            cur = parent
        chain.reverse()
        for p in self.tried.get(pid, [])[-RECENT_CHILDREN:]:
            chain.append(LineageEntry(program_id=p.program or "-", operator=p.operator,
                                      score=p.screen, parent_score=self._screen_of(pid),
                                      note=f"{p.outcome}: {p.reason}"[:300]))
        return chain

    def _screen_of(self, pid: str) -> float | None:
        return self.book.score(pid, "train", self.screen_ids)

    # --- one proposal -------------------------------------------------------------------------------
    def _pick(self, rng: random.Random, island: int, exclude: set[str]) -> str:
        return self.parents.pick(rng, island, exclude, self.search)

    def propose(self, generation: int, slot: int) -> tuple[ProposalRecord, ProgramRecord | None]:
        cfg = self.config
        rng = slot_rng(cfg.seed, generation, slot)
        island = slot % cfg.islands
        name = self.choose_operator.choose(rng, sorted(self.operators))
        op = self.operators[name]
        parents = [self._pick(rng, island, set())]
        for _ in range(1, max(1, int(getattr(op, "arity", 1)))):
            others = [i for i in range(cfg.islands) if i != island and self.population.islands[i]]
            src = rng.choice(others) if others else island
            parents.append(self._pick(rng, src, set(parents)))
        views = [self.view(p, rng, island) for p in parents]
        best = self.population.best()
        ref_id = next((self.population.best(i) for i in range(cfg.islands) if i != island
                       and self.population.best(i) not in parents), best if best not in parents else None)
        ctx = OperatorContext(
            rng=random.Random(rng.getrandbits(64)), seeds=self.seeds, score_minibatch=self.score_minibatch,
            llm=self.llm_for(f"operator:{name}") if getattr(op, "needs_llm", False) else None,
            reference=self.view(ref_id, rng, island) if ref_id else None,
            budget_tokens=cfg.budget, options=dict(cfg.operator_options), sandbox=self.sandbox)
        prop = ProposalRecord(generation=generation, slot=slot, island=island, operator=name, parents=parents)
        try:
            child = op.propose(views, ctx)
        except (Interrupted, KeyboardInterrupt, InfrastructureError):
            raise  # an engine that stayed away stops the run; the proposal is made again on resume
        except OperatorFailed as e:
            return self._failed(prop, e.reason, e.detail), None
        except BudgetExceeded as e:
            return self._failed(prop, "budget", str(e)), None
        except Exception as e:  # an operator bug is one failed proposal, not a dead run
            return self._failed(prop, "operator_error", f"{type(e).__name__}: {e}"), None
        return self.admit(prop, child.source, child.knobs, child.note, name)

    @staticmethod
    def _failed(prop: ProposalRecord, reason: str, detail: str) -> ProposalRecord:
        prop.outcome = "failed"
        prop.reason = f"{reason}: {detail}"[:500] if detail else reason
        return prop

    def admit(self, prop: ProposalRecord, source: str, knobs: dict[str, Any] | None, note: str,
              name: str) -> tuple[ProposalRecord, ProgramRecord | None]:
        """Validate a child and check its novelty; the proposal stays ``pending`` when it is admitted."""
        try:
            program = from_source(source, name="child")
            values = resolve(program.knob_specs, knobs)
        except (HarnessError, KnobsError) as e:
            return self._failed(prop, "invalid", str(e)), None
        if program.needs_llm and self.llm_for("harness") is None:
            return self._failed(prop, "needs_llm", "the child calls toolkit.llm and this run has no model"), None
        pid = program_id(source, values, program.knob_specs)
        prop.program = pid
        verdict = self.novelty.check(pid, source, values, program.knob_specs)
        rec = ProgramRecord(id=pid, name=f"g{prop.generation}.{prop.slot}-{name}", parents=prop.parents,
                            island=prop.island, generation=prop.generation, operator=name, source=source,
                            knobs=values, status="pending", note=note[:4000])
        if not verdict.novel:
            prop.outcome, prop.reason = "rejected-novelty", verdict.reason
            rec.status = "rejected"
            # The duplicate itself is not stored again; a near-duplicate is kept for the report.
            return prop, (rec if pid not in self.programs and pid != verdict.similar_to else None)
        return prop, rec
