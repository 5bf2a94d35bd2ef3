"""The evolution engine: population, operators, cascade evaluation, run store (docs/ARCHITECTURE.md#evolution).

core/        engine.py (the loop: seeds, generations, resume-by-replay), config.py (EvolveConfig, config.json),
             breed.py (one proposal), run_state.py + final.py (val, the pick, test once, summary),
             selection.py (the pick: best on train among val's ties), stops.py, live.py (the live view)
strategies/  the search's policies behind the protocols of base.py, built by defaults.py: parents.py,
             behaviour.py, operator_choice.py, migration.py (ring, island reset), archive.py,
             population.py (islands), novelty.py (code near-duplicates), sampling.py (rank weights)
execution/   executor.py (the Executor protocol, inline), ray_executor.py, ray_broker.py, ray_cleanup.py,
             ray_quiet.py, cascade.py (evaluation, the screen), diagnosis.py (why a probe was missed)
store/       run_store.py (run.db, config.json, best.py), ledger.py (LLM cache and cost), scores.py (the book)
operators/   the variation operators; registry.py maps names to them
"""
