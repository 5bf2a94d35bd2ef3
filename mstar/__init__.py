"""mstar: evolve memory harnesses for LLM agents.

Importing this package stays cheap: heavy dependencies (litellm, ray, docker, optuna)
are imported inside the functions that need them.
"""

__version__ = "0.1.0"
