"""Scoring on the host. ``METRIC_VERSION`` names the evidence-recall rule a run was scored with.

1: content-word coverage per item, answer-string fallback (before November 2026).
2: in-order span per credited event, claimed spans, no answer fallback, character cap (docs/SCORING.md).
Scores of different versions do not compare: a run records its version and is never resumed under another.
"""

METRIC_VERSION = 2
