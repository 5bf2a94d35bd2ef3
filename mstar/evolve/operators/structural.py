"""``structural`` (offline): swap, insert or remove one component of a modular harness.

A move takes the parent's source and
- swaps a component (encode / index / retrieve / expand / pack / maintain) for the same-named one of a
  donor (a seed of the library, or the reference program the engine shows), or
- inserts one: the same swap where the parent's component is the identity (``expand`` returning its
  hits), e.g. bm25 gets the neighbour expansion of bm25_neighbors, or
- removes one: ``expand`` / ``maintain`` replaced by the identity.

The moved function brings the module-level helpers, constants and imports it uses (transitively);
one that collides with a different parent definition is renamed ``<name>_<donor>``. The knobs the
moved code reads join the child's KNOBS with the donor's spec (renamed too when the parent still
reads a same-named knob with another meaning); helpers and knobs nothing uses any more are pruned.
Every child passes the static checks and the smoke run before it is returned; a move that fails
is dropped and another is tried, up to ``structural_tries`` (default 8), then ``OperatorFailed``.
Only ``ctx.rng`` is used, so the same stream gives the same child.

Which component to change follows the parent's failure diagnosis (move_policy.py): e.g. probes lost at
``not_retrieved`` make retrieve / index / expand the likely targets; the note says which stage drove
the choice. With no diagnosis that points at a component, or ``guided=false`` (ablations), every move
is equally likely.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from mstar.errors import InfrastructureError
from mstar.evolve.operators.base import OperatorContext, OperatorFailed, ParentView, Proposal
from mstar.evolve.operators.components import (
    COMPONENTS,
    IDENTITY_ARG,
    RESERVED,
    Program,
    component_state,
    is_identity,
    knob_reads,
    prune_dead,
    rename_in_stmt,
    unused_knobs,
)
from mstar.evolve.operators.move_policy import Guidance, component_weights
from mstar.evolve.operators.source_edit import rewrite_knobs, set_knob_defaults

DEFAULT_TRIES = 8


class MoveError(Exception):
    """This move cannot be made (e.g. an import collides); another one is tried."""


@dataclass(frozen=True)
class Move:
    kind: str  # swap | insert | remove
    component: str
    donor: str = ""  # donor name (a seed, or "ref:<id>"); empty for remove
    # Components of the same donor that must come along because they share ``state`` keys with the
    # moved one (dense.retrieve reads the matrix dense.index builds).
    partners: tuple[str, ...] = ()

    def label(self) -> str:
        if self.kind == "remove":
            return f"-{self.component} (identity)"
        return "+".join((self.component, *self.partners)) + f" <- {self.donor}"


def partners_for(parent: Program, donor: Program, comp: str) -> tuple[str, ...] | None:
    """Donor components to move with ``comp`` so every state key read is written; None when no set of
    at most three components is consistent."""
    take = [comp]
    for _ in range(3):
        parts = {c: component_state(donor if c in take else parent, c) for c in COMPONENTS}
        missing = set().union(*(r for r, _ in parts.values())) - set().union(*(w for _, w in parts.values()))
        if not missing:
            return tuple(take[1:])
        # A donor writer of a missing key, else a parent reader of it that the donor replaces.
        add = [c for c in COMPONENTS if c not in take and donor.function(c) is not None
               and component_state(donor, c)[1] & missing]
        add = add or [c for c in COMPONENTS if c not in take and donor.function(c) is not None
                      and parts[c][0] & missing]
        if not add:
            return None
        take.append(add[0])
    return None


def _tag(donor: str) -> str:
    if donor.startswith("ref:"):  # a program id: a short, readable prefix is enough
        return "ref" + re.sub(r"\W+", "", donor[4:])[:6]
    return re.sub(r"\W+", "_", donor).strip("_") or "donor"


def _closure_sig(prog: Program, name: str) -> str:
    """What a component does: its code and everything it carries (a moved identical function with a
    different helper, e.g. another stop list, is a different component)."""
    i = prog.defs[name]
    return "\n".join(prog.dump(j) for j in [i, *prog.closure(i)])


def plan_moves(parent: Program, donors: dict[str, Program]) -> list[Move]:
    """Every move that would change what the parent does, in a deterministic order."""
    moves: list[Move] = []
    for comp in parent.live_components():
        fn = parent.function(comp)
        mine = _closure_sig(parent, comp)
        seen = {mine}
        for name in sorted(donors):
            d = donors[name]
            if d.function(comp) is None:
                continue
            sig = _closure_sig(d, comp)
            if sig in seen:
                continue
            seen.add(sig)
            partners = partners_for(parent, d, comp)
            if partners is None:
                continue
            kind = "insert" if is_identity(fn) and not is_identity(d.function(comp)) else "swap"
            moves.append(Move(kind, comp, name, partners))
        if comp in IDENTITY_ARG and not is_identity(fn):
            moves.append(Move("remove", comp))
    return moves


def transplant(parent: Program, donor: Program, comp: str, tag: str) -> tuple[str, list[str]]:
    """The parent's source with ``comp`` taken from ``donor``; returns (source, note parts)."""
    root = donor.defs[comp]
    carried = donor.closure(root)
    # Shared: a helper the parent defines identically, whose own needs are shared too (fixed point).
    parent_dumps = {parent.dump(i) for i in range(len(parent.tree.body))}
    shared = {j for j in carried if donor.dump(j) in parent_dumps
              and all(n in parent.defs and parent.dump(parent.defs[n]) == donor.dump(j) for n in _bound(donor, j))}
    changed = True
    while changed:
        changed = False
        for j in list(shared):
            if not donor.deps(j) <= shared:
                shared.discard(j)
                changed = True
    copy = [j for j in carried if j not in shared]
    names: dict[str, str] = {}
    imports: list[str] = []
    for j in copy:
        stmt = donor.stmt(j)
        is_import = isinstance(stmt, ast.Import | ast.ImportFrom)
        for n in sorted(_bound(donor, j)):
            if n in RESERVED:
                raise MoveError(f"{comp} needs {n} of the donor")
            if n in parent.defs:
                if is_import:
                    raise MoveError(f"import of {n!r} collides with the parent's {n!r}")
                new, k = f"{n}_{tag}", 2
                while new in parent.defs or new in donor.defs:
                    new, k = f"{n}_{tag}{k}", k + 1
                names[n] = new
        if is_import:
            imports.append(donor.text(j))

    # Knobs the carried code reads: the donor's spec joins the child (renamed if the parent keeps
    # reading a same-named knob that means something else).
    pk, dk = parent.knobs(), donor.knobs()
    reads: set[str] = set()
    for j in [root, *carried]:
        reads |= set(knob_reads(donor.stmt(j)))
    still_read: set[str] = set()
    for i, s in enumerate(parent.tree.body):
        if i != parent.defs[comp]:
            still_read |= set(knob_reads(s))
    knob_names: dict[str, str] = {}
    add: dict[str, dict] = {}
    for k in sorted(reads):
        # Same knob apart from its default: keep the parent's (its value may be tuned already).
        if k not in dk or (k in pk and _sans_default(pk[k]) == _sans_default(dk[k])):
            continue
        if k in pk and k in still_read:
            new, n = f"{k}_{tag}", 2
            while new in pk or new in dk:
                new, n = f"{k}_{tag}{n}", n + 1
            knob_names[k] = new
            add[new] = dk[k]
        else:
            add[k] = dk[k]

    body = [rename_in_stmt(donor, j, names, knob_names) for j in copy
            if not isinstance(donor.stmt(j), ast.Import | ast.ImportFrom)]
    body.append(rename_in_stmt(donor, root, names, knob_names))
    lines = parent.source.splitlines(keepends=True)
    l0, _, l1, _ = parent.stmt_span(parent.defs[comp])
    lines[l0 - 1: l1] = ["\n\n\n".join(body) + "\n"]
    if imports:
        last_import = max((s.end_lineno or s.lineno for s in parent.tree.body if isinstance(s, ast.Import | ast.ImportFrom)),
                          default=None)
        at = last_import if last_import is not None else _after_docstring(parent)
        lines[at:at] = [("\n" if last_import is None else "") + "\n".join(imports) + "\n"]
    source = "".join(lines)

    keep = [k for k in pk if k not in add]
    source = rewrite_knobs(source, keep=keep, add=add)
    source, dropped = prune_dead(source)
    source = _drop_unused_knobs(source)
    note = [f"{comp} <- {tag}.{comp}"]
    if add:
        note.append("+knobs " + ", ".join(add))
    if names:
        note.append("renamed " + ", ".join(f"{a}->{b}" for a, b in names.items()))
    carried_names = sorted({n for j in copy for n in _bound(donor, j)})
    if carried_names:
        note.append("+helpers " + ", ".join(names.get(n, n) for n in carried_names))
    if dropped:
        note.append("-unused " + ", ".join(dropped))
    return source, note


def remove(parent: Program, comp: str) -> tuple[str, list[str]]:
    """``comp`` replaced by its identity (same signature, returns the argument it was given)."""
    fn = parent.function(comp)
    assert fn is not None
    arg = IDENTITY_ARG[comp]
    if arg not in {a.arg for a in fn.args.args}:
        raise MoveError(f"{comp} has no parameter {arg!r} to return")
    lines = parent.source.splitlines(keepends=True)
    l0, _, l1, _ = parent.stmt_span(parent.defs[comp])
    lines[l0 - 1: l1] = [f"def {comp}({ast.unparse(fn.args)}):\n    return {arg}\n"]
    source, dropped = prune_dead("".join(lines))
    before = set(Program.parse(source).knobs())
    source = _drop_unused_knobs(source)
    gone = sorted(before - set(Program.parse(source).knobs()))
    note = [f"-{comp} (identity)"]
    if gone:
        note.append("-knobs " + ", ".join(gone))
    if dropped:
        note.append("-unused " + ", ".join(dropped))
    return source, note


def _sans_default(spec: dict) -> dict:
    return {k: v for k, v in spec.items() if k != "default"}


def _bound(prog: Program, j: int) -> set[str]:
    return {n for n, i in prog.defs.items() if i == j}


def _after_docstring(prog: Program) -> int:
    first = prog.tree.body[0] if prog.tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno or 0
    return 0


def _drop_unused_knobs(source: str) -> str:
    dead = unused_knobs(source)
    if not dead:
        return source
    return rewrite_knobs(source, keep=[k for k in Program.parse(source).knobs() if k not in dead], add={})


def validate(source: str, sandbox: Any = None) -> None:
    """The harness validator (static checks, then the smoke run in ``sandbox``, the run's backend);
    raises on any defect."""
    from mstar.harness.validate import validate_source

    checked = validate_source(source, sandbox, name="structural-child")
    # An LLM program cannot be smoke-run offline, which is no defect of it; a program that does not
    # declare NEEDS_LLM but now calls the model (moved code did) is one.
    if checked.needs_llm and not checked.program.needs_llm:
        raise MoveError("the child calls toolkit.llm but does not declare NEEDS_LLM")


def order_moves(moves: list[Move], guidance: Guidance | None, rng) -> list[Move]:
    """The order in which moves are tried. Unguided: a uniform shuffle. Guided: draw a component by
    its weight (among those with moves left), then one of its moves uniformly, until none is left."""
    if guidance is None:
        moves = list(moves)
        rng.shuffle(moves)
        return moves
    left: dict[str, list[Move]] = {}
    for m in moves:  # plan order, so the draw is deterministic for a given rng
        left.setdefault(m.component, []).append(m)
    out: list[Move] = []
    while left:
        comps = list(left)
        comp = rng.choices(comps, weights=[guidance.weights[c] for c in comps])[0]
        group = left[comp]
        out.append(group.pop(rng.randrange(len(group))))
        if not group:
            del left[comp]
    return out


def _guided(ctx: OperatorContext) -> bool:
    """The ``guided`` option (default on); ``--op-opt guided=false`` turns the diagnosis off."""
    val = ctx.options.get("guided", True)
    if isinstance(val, bool):
        return val
    text = str(val).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise OperatorFailed("bad_option", f"--op-opt guided={val!r}: expected true or false")


class StructuralOperator:
    name = "structural"
    needs_llm = False
    arity = 1

    def propose(self, parents: list[ParentView], ctx: OperatorContext) -> Proposal:
        parent = parents[0]
        # The parent's current knob values become its defaults first, so the child starts from them.
        base = set_knob_defaults(parent.source, dict(parent.knobs)) if parent.knobs else parent.source
        try:
            prog = Program.parse(base)
        except SyntaxError as e:
            raise OperatorFailed("invalid_parent", str(e)) from None
        if not prog.live_components() or "Memory" not in prog.defs:
            raise OperatorFailed("not_modular", f"{parent.name} defines none of the components its driver calls")
        donors: dict[str, Program] = {}
        sources = dict(ctx.seeds)
        if ctx.reference is not None and ctx.reference.id != parent.id:
            sources[f"ref:{ctx.reference.id}"] = ctx.reference.source
        for name, src in sorted(sources.items()):
            try:
                d = Program.parse(src)
            except SyntaxError:
                continue
            if d.live_components():
                donors[name] = d
        moves = plan_moves(prog, donors)
        if not moves:
            raise OperatorFailed("no_move", "no donor offers a component that differs from the parent's")
        guidance = component_weights(parent.failures, {m.component for m in moves}) if _guided(ctx) else None
        moves = order_moves(moves, guidance, ctx.rng)
        tries = max(1, int(ctx.options.get("structural_tries", DEFAULT_TRIES)))
        errors: list[str] = []
        for move in moves[:tries]:
            try:
                if move.kind == "remove":
                    child, note = remove(prog, move.component)
                else:
                    child, note = transplant(prog, donors[move.donor], move.component, _tag(move.donor))
                    for other in move.partners:
                        child, more = transplant(Program.parse(child), donors[move.donor], other, _tag(move.donor))
                        note += more
                if ast.dump(ast.parse(child)) == ast.dump(prog.tree):
                    raise MoveError("no change")
                validate(child, ctx.sandbox)
            except InfrastructureError:
                raise  # the sandbox's engine went away: not a broken move (the run stops, resumable)
            except Exception as e:  # a broken move is dropped; Interrupted is a BaseException and passes
                errors.append(f"{move.label()}: {type(e).__name__}: {str(e)[:160]}")
                continue
            if move.kind == "insert":
                note[0] = f"+{note[0]} (was identity)"
            if guidance is not None:
                note[0] = f"{guidance.reason(move.component)}: {note[0]}"
            return Proposal(source=child, knobs=None, operator=self.name, parents=[parent.id], note="; ".join(note))
        raise OperatorFailed("no_valid_move", f"{min(tries, len(moves))} moves failed: " + " | ".join(errors)[:1500])
