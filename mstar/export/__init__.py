"""``mstar export``: a harness (a run's winner, a seed or a file) as one standalone module with a
default toolkit, persistence and agent adapters. See docs/EXPORT.md."""
