"""Variation operators, one file each; ``registry.py`` maps names to classes."""
