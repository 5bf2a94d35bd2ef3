"""``tune`` (offline): optuna TPE over a program's ``KNOBS`` on the tuning minibatch.

The first trial is the parent's own values (``enqueue_trial``), so the study knows the bar it must
beat; the rest come from a TPE sampler seeded from ``ctx.rng`` (same stream, same trials). Every trial
is scored by ``ctx.score_minibatch`` (the engine counts those evaluations; ``Interrupted``, a
BaseException, goes straight through optuna and this operator). A trial repeating values already
scored is answered from memory instead of being paid for again.

Choice: a study whose best trial does not beat the parent raises ``OperatorFailed("no_gain")``: such
a child would only spend a screen evaluation to rediscover its parent. A winner's values become the
child's KNOBS defaults (only the ``default`` values are rewritten, every other byte stays) and are
also returned in ``Proposal.knobs``. Options: ``trials`` (default 8); ``tune_mode`` -- ``tpe`` (default:
the TPE sampler over every knob), ``local`` (hill-climbing from the parent: each trial moves one to
three knobs a little from the best values so far; ``local_step``) or ``near`` (TPE whose start-up trials
are those local steps instead of random draws, so its model is fitted around the parent, not the whole
space); ``suite_floor`` (default true; a joint run only) -- a trial scoring below the parent on any
suite's part of the minibatch is no candidate, and the search climbs the score less that shortfall: a
child may not buy one suite with another.
"""

from __future__ import annotations

import math
from typing import Any

from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView, Proposal
from mstar.evolve.operators.source_edit import set_knob_defaults

DEFAULT_TRIALS = 8


def _suggest(trial: Any, name: str, spec: Any) -> Any:
    if spec.type == "int":
        return trial.suggest_int(name, spec.low, spec.high, log=spec.log)
    if spec.type == "float":
        v = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        # Four significant digits: readable defaults, and the value scored is the value written.
        return min(spec.high, max(spec.low, float(f"{v:.4g}")))
    if spec.type == "bool":
        return trial.suggest_categorical(name, [False, True])
    return trial.suggest_categorical(name, list(spec.choices))


def local_step(rng: Any, specs: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``base`` with one to three knobs moved a little: a numeric knob by a normal step of a fifth of its
    range (in log space for a log knob), a bool flipped, a category swapped. A fine-tuner's move: TPE's
    start-up trials draw every knob anew, which from a good parent is mostly a long jump downhill."""
    values = dict(base)
    for name in rng.sample(sorted(specs), k=min(len(specs), rng.choice((1, 1, 2, 3)))):
        spec, v = specs[name], base[name]
        if spec.type in ("int", "float"):
            lo, hi = float(spec.low), float(spec.high)
            if spec.log and lo > 0:
                x = math.exp(math.log(max(float(v), lo)) + rng.gauss(0.0, 0.2 * (math.log(hi) - math.log(lo))))
            else:
                x = float(v) + rng.gauss(0.0, 0.2 * (hi - lo))
            x = min(hi, max(lo, x))
            if spec.type == "int":
                step = round(x)
                if step == v and hi > lo:  # a move that rounds back to where it was is no move
                    step = int(min(hi, max(lo, v + (1 if x >= v else -1))))
                values[name] = int(step)
            else:
                values[name] = min(spec.high, max(spec.low, float(f"{x:.4g}")))
        elif spec.type == "bool":
            values[name] = not v
        else:
            others = [c for c in spec.choices if c != v]
            if others:
                values[name] = rng.choice(others)
    return values


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


class TuneOperator:
    name = "tune"
    needs_llm = False
    arity = 1

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        import optuna

        from mstar.harness.knobs import KnobsError, resolve
        from mstar.harness.loader import from_source

        parent = parents[0]
        if ctx.score_minibatch is None:
            raise OperatorFailed("no_minibatch", "tune needs the engine's score_minibatch")
        try:
            specs = from_source(parent.source, name=parent.name).knob_specs
            start = resolve(specs, {k: v for k, v in parent.knobs.items() if k in specs})
        except (KnobsError, ValueError) as e:
            raise OperatorFailed("invalid_parent", str(e)) from None
        if not specs:
            raise OperatorFailed("no_knobs", f"{parent.name} declares no KNOBS")
        try:
            n_trials = int(ctx.options.get("trials", DEFAULT_TRIALS))
        except (TypeError, ValueError):
            raise OperatorFailed("bad_option", f"--op-opt trials={ctx.options.get('trials')!r}: not an integer") from None
        if n_trials < 2:
            raise OperatorFailed("bad_option", f"--op-opt trials={n_trials}: tune needs at least 2 trials")

        mode = str(ctx.options.get("tune_mode", "tpe"))
        if mode not in ("tpe", "local", "near"):
            raise OperatorFailed("bad_option", f"--op-opt tune_mode={mode!r}: choose tpe, local or near")
        floor_on = str(ctx.options.get("suite_floor", True)).lower() not in ("false", "0", "no", "off")
        scored: dict[tuple, tuple[float, float, dict[str, float]]] = {}
        # (values, score, shortfall) in trial order; [0] is the parent. shortfall: how far the trial falls
        # below the parent on the suites it loses (a joint run's minibatch; 0 with one suite).
        trials: list[tuple[dict[str, Any], float, float]] = []
        floor: dict[str, float] = {}

        def score(values: dict[str, Any]) -> float:
            """The value the search climbs: the minibatch score less any suite's shortfall."""
            key = tuple(sorted((k, repr(v)) for k, v in values.items()))
            if key not in scored:
                got = ctx.score_minibatch(parent.source, values)
                suites = getattr(got, "suites", {}) if floor_on else {}
                if not trials and len(suites) > 1:
                    floor.update(suites)  # the parent's own score on each suite
                short = sum(max(0.0, floor[g] - suites.get(g, 0.0)) for g in floor)
                scored[key] = (float(got), short, suites)
            trials.append((values, *scored[key][:2]))
            return scored[key][0] - scored[key][1]

        if mode == "local":
            best, best_score = dict(start), score(dict(start))
            for _ in range(n_trials - 1):
                values = local_step(ctx.rng, specs, best)
                if (v := score(values)) > best_score and trials[-1][2] <= 1e-12:
                    best, best_score = values, v
        else:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            n_startup = min(10, max(2, n_trials // 2))
            sampler = optuna.samplers.TPESampler(seed=ctx.rng.getrandbits(31), n_startup_trials=n_startup)
            study = optuna.create_study(direction="maximize", sampler=sampler)  # in-memory storage
            # Bools are suggested as categoricals; optuna takes the enqueued values as they are.
            study.enqueue_trial(dict(start))
            best, best_score = dict(start), -math.inf
            for i in range(n_trials):
                if mode == "near" and 0 < i < n_startup:
                    study.enqueue_trial(local_step(ctx.rng, specs, best))  # a start-up trial near the best so far
                trial = study.ask()
                values = {k: _suggest(trial, k, s) for k, s in specs.items()}
                v = score(values)
                study.tell(trial, v)
                if v > best_score and trials[-1][2] <= 1e-12:  # the local steps start from a trial losing no suite
                    best, best_score = values, v
        baseline = trials[0][1]
        # A trial that loses any suite to the parent is no candidate (a joint run asks for a generalist).
        # The first trial reaching the best score wins: ties go to the earliest (the parent's, if it is one).
        best_values, best_score, _ = max((t for t in trials if t[2] <= 1e-12), key=lambda t: t[1])
        if best_score <= baseline + 1e-12 or best_values == trials[0][0]:
            lost = sum(t[2] > 1e-12 for t in trials)
            raise OperatorFailed("no_gain", f"best of {n_trials} trials {best_score:.4f} does not beat "
                                            f"the parent's {baseline:.4f} on the minibatch"
                                            + (f" ({lost} lost a suite to the parent)" if lost else ""))
        source = set_knob_defaults(parent.source, best_values)
        # The same validator as every other operator's children, in the run's sandbox.
        from mstar.harness.validate import ValidationError, validate_source

        try:
            validate_source(source, ctx.sandbox, name="tune-child")
        except ValidationError as e:
            raise OperatorFailed(f"invalid_child_{e.reason}", e.detail[:1000]) from None
        first = trials[0][0]
        changed = [f"{k} {_fmt(first[k])}->{_fmt(v)}" for k, v in best_values.items() if v != first[k]]
        key = tuple(sorted((k, repr(v)) for k, v in best_values.items()))
        per_suite = "".join(f", {g} {floor[g]:.4f} -> {scored[key][2].get(g, 0.0):.4f}" for g in floor)
        note = (f"tune: {', '.join(changed)} (minibatch {baseline:.4f} -> {best_score:.4f}{per_suite}, "
                f"{len(scored)} distinct of {n_trials} trials)")
        return Proposal(source=source, knobs=best_values, operator=self.name, parents=[parent.id], note=note)

