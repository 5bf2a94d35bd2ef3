"""The evolution engine: population, operators, cascade evaluation, run store (docs/ARCHITECTURE.md#evolution).

engine.py     the loop: seeds, generations, resume-by-replay      final.py    val, the pick, test once, summary
selection.py  the pick: best on train among val's ties (1 SE)
breed.py      one proposal: operator, parents, checks             cascade.py  evaluation through the executor, the screen
population.py islands and migration                               archive.py  the Pareto archive
sampling.py   parent weights (rank x few children)                novelty.py  near-duplicate filter
scores.py     per-episode aggregates, diagnosis adapter           store.py    run.db, config.json, best.py
executor.py   the Executor protocol and `inline`                  ledger.py   the broker over run.db (cache, cost)
stops.py      limits, Ctrl-C, the STOP file                       live.py     the rich live view / plain log lines
config.py     EvolveConfig (config.json)                          operators/  the variation operators
"""
