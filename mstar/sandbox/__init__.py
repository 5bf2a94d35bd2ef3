"""The host side of candidate isolation: backends that run a harness and talk to it (docs/ARCHITECTURE.md#sandbox)."""
