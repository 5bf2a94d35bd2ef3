"""The evolution engine: population, operators, cascade evaluation, run store (DESIGN §8-9)."""
