"""Several task suites evolved against at once (``mstar evolve --task A --data X --task B --data Y``).

Each suite keeps its own data file, options and splits: the joint ``train`` is the union of every
suite's ``train``, and so on for ``val`` and ``test``. Episode ids are namespaced by suite
(``locomo/conv-26``, ``longmemeval/0a995998``) so that they never collide and every score can be
told back to its suite (``group_of``).

The objective across suites is the **mean over suites of each suite's probe-weighted mean**
(``joint_score``). Not the probe-weighted mean over the union: LoCoMo's train has ~1,000 probes and
LongMemEval's one probe per episode, so pooling the probes would let the larger suite decide alone, and
a program that wins on it by fitting its quirks would win the run. Weighting suites equally makes a
point lost on the small suite cost as much as a point won on the large one.

The same rule scores transfer suites (``--transfer``), each on its own: see docs/EVOLVE.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mstar.episodes import Episode
from mstar.errors import UsageError
from mstar.tasks.base import check_split, hash_unit

SEP = "/"  # between a suite's label and its own episode id; a task name never holds it


class SuiteSpec(BaseModel):
    """One suite of a joint run or a transfer target, as config.json records it."""

    task: str
    data: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def group_of(episode_id: str) -> str:
    """The suite label of a namespaced episode id (``"locomo/conv-26"`` -> ``"locomo"``)."""
    return episode_id.partition(SEP)[0]


def joint_score(parts: Mapping[str, tuple[float, int]]) -> float:
    """``{suite: (sum of the metric over its scored probes, number of scored probes)}`` -> the mean
    over suites of each suite's mean. A suite with no scored probe (e.g. only abstention probes) has no
    mean and is left out; with none at all, 0."""
    means = [s / n for s, n in parts.values() if n]
    return sum(means) / len(means) if means else 0.0


def namespaced(label: str, episodes: Iterable[Episode]) -> list[Episode]:
    """Copies with ids ``<label>/<id>``; the suite's own id stays in the (host-only) meta, so the harness
    sees the episode exactly as under `mstar eval` of its suite (mstar.visible)."""
    from mstar.visible import OWN_ID

    return [e.model_copy(update={"id": f"{label}{SEP}{e.id}", "meta": {**e.meta, OWN_ID: e.meta.get(OWN_ID, e.id)}})
            for e in episodes]


class JointTask:
    """The union of several suites, each with its own data and splits; ids are ``<task>/<id>``."""

    name = "joint"
    description = "several suites at once: the mean over suites of each suite's mean score"
    needs_data = False

    def __init__(self, specs: list[SuiteSpec]):
        from mstar.tasks.registry import get_task

        if len(specs) < 2:
            raise UsageError("--task: a joint run needs at least two suites")
        seen: set[str] = set()
        self.suites: dict[str, Any] = {}
        for spec in specs:
            if spec.task in seen:
                raise UsageError(f"--task {spec.task}: given twice (each suite once; one --data each)")
            seen.add(spec.task)
            self.suites[spec.task] = get_task(spec.task, data=spec.data, **spec.options)
        self._cache: dict[str, list[Episode]] = {}

    @property
    def labels(self) -> list[str]:
        return list(self.suites)

    group_of = staticmethod(group_of)

    def episodes(self, split: str = "all") -> list[Episode]:
        check_split(split)
        if split not in self._cache:
            parts = {label: suite.episodes(split) for label, suite in self.suites.items()}
            empty = [label for label, eps in parts.items() if not eps]
            if split == "train" and empty:  # the objective would silently leave that suite out of the search
                raise UsageError(f"--task {empty[0]}: its train split is empty; every suite of a joint run needs "
                                 "train episodes")
            self._cache[split] = [e for label, eps in parts.items() for e in namespaced(label, eps)]
        return list(self._cache[split])


def split_task_opts(tasks: list[str], opts: dict[str, Any]) -> list[dict[str, Any]]:
    """``--task-opt`` of a joint run -> the options of each suite. With several suites a key names its
    suite: ``longmemeval.split=70/10/20``; an unprefixed key (or another suite's name) is refused."""
    out: list[dict[str, Any]] = [{} for _ in tasks]
    for key, value in opts.items():
        suite, dot, name = key.partition(".")
        if not dot or suite not in tasks or not name:
            raise UsageError(f"--task-opt {key}: with several --task, name the suite: TASK.KEY=VALUE "
                             f"(TASK one of {', '.join(tasks)})")
        out[tasks.index(suite)][name] = value
    return out


def pair_data(tasks: list[str], data: list[str]) -> list[str | None]:
    """The i-th --data goes with the i-th --task; ``-`` stands for "none" (a suite that takes no file,
    or the default lookup). No --data at all: every suite looks its file up by the default rule."""
    if not data:
        return [None] * len(tasks)
    if len(data) != len(tasks):
        raise UsageError(f"--data: {len(data)} given for {len(tasks)} --task; the i-th --data goes with the i-th "
                         "--task (write --data - for a suite without a file)")
    return [None if d in ("-", "") else d for d in data]


def build_suite(task: str, data: str | Path | None, options: dict[str, Any], suites: list[SuiteSpec]) -> Any:
    """The suite a run evolves against: its one task, or the joint suite of ``suites`` when it has several."""
    if suites:
        return JointTask(suites)
    from mstar.tasks.registry import get_task

    return get_task(task, data=data, **options)


def parse_transfer(raw: str) -> SuiteSpec:
    """``TASK[:DATA]`` -> a spec; the task name is checked at once."""
    from mstar.tasks.registry import TASKS

    task, _, data = raw.partition(":")
    task = task.strip()
    if task not in TASKS:
        raise UsageError(f"--transfer {raw}: unknown task {task!r} (choose from {', '.join(sorted(TASKS))})")
    return SuiteSpec(task=task, data=data.strip() or None)


def joint_weights(values: dict[str, float], group: Any) -> dict[str, float]:
    """Per-probe values (keyed ``<episode>/<probe>``) reweighted so that their plain mean is the joint
    objective (each suite's probes weigh ``N / (suites * n_suite)``): the paired per-probe comparison of
    the final pick then measures the same thing as the score it ranks by. ``group`` None: unchanged."""
    if group is None or not values:
        return values
    counts: dict[str, int] = {}
    for k in values:
        counts[group(k)] = counts.get(group(k), 0) + 1
    n, g = len(values), len(counts)
    return {k: v * n / (g * counts[group(k)]) for k, v in values.items()}


def choose_per_suite(choose: Any, train_ids: list[str], group: Any, *args: Any,
                     **kwargs: Any) -> tuple[list[str], list[str]]:
    """The cascade's screen and the tuning minibatch (``choose(ids, *args)``) drawn in each suite of a
    joint run, so that both measure every suite (``--screen-episodes N``: N per suite); ``group`` None
    (one suite): ``choose`` itself, unchanged."""
    if group is None:
        return choose(train_ids, *args, **kwargs)
    screen: list[str] = []
    minibatch: list[str] = []
    for label in dict.fromkeys(group(e) for e in train_ids):
        s, m = choose([e for e in train_ids if group(e) == label], *args, **kwargs)
        screen += s
        minibatch += m
    return screen, minibatch


def cap_train(episodes: list[Episode], limit: int | None, group: Any = None) -> list[Episode]:
    """At most ``limit`` train episodes per suite (``--train-episodes``): a fixed subset, the same for
    every run of the data and every ``--seed`` (a stable hash of the episode's id), so runs compare on
    one objective; the file order is kept inside it. ``limit`` None: every episode."""
    if not limit:
        return list(episodes)
    keep: set[str] = set()
    suites: dict[str, list[Episode]] = {}
    for e in episodes:
        suites.setdefault(group(e.id) if group else "", []).append(e)
    for eps in suites.values():
        keep.update(e.id for e in sorted(eps, key=lambda e: hash_unit(e.id, "train-episodes"))[:limit])
    return [e for e in episodes if e.id in keep]
