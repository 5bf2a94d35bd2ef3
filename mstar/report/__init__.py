"""Reviewing a run: ``mstar report`` (one self-contained HTML file) and ``mstar dashboard`` (a local server)."""
