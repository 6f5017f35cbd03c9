"""The exit codes of every impasto command, and the one mapping of impasto's errors to messages and codes."""

import functools
import sys
from collections.abc import Callable

from impasto.model.errors import InvalidInputError, WeightsError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C.


def reports_errors(run: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """Wraps a CLI `run(argv)`: bad input -> message and exit 2; missing weights or a failed write (a full disk,
    no permission) -> message and exit 1; no traceback."""

    @functools.wraps(run)
    def wrapper(argv: list[str]) -> int:
        try:
            return run(argv)
        except InvalidInputError as error:
            print(f"impasto: error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except (WeightsError, OSError) as error:
            print(f"impasto: error: {error}", file=sys.stderr)
            return EXIT_FAILURE

    return wrapper
