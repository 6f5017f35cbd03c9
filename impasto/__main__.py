"""`python -m impasto`: the `impasto` command, for when the console script is not on PATH (tests use this)."""

import sys

from impasto.cli import main

sys.exit(main())
