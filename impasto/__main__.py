"""`python -m impasto`: the same as the `impasto` console script."""

import sys

from impasto.cli import main

sys.exit(main())
