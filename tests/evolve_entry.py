"""`mstar` with the test doubles registered: the subprocess tests (kill -9, Ctrl-C) run this file."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evolve_helpers  # noqa: E402

evolve_helpers.register()

from mstar.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main()
