"""Parts of the exported module. Each file is plain Python that lints and imports on its own; the
assembler copies what follows its ``EXPORT BELOW`` marker into the exported file, after the harness.
The code above a marker only stands in for names the harness or an earlier part provides."""
