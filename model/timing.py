"""Timing several ways of doing one thing fairly on a shared machine."""

import random
import time
from collections.abc import Callable

SETTLE_SECONDS = 0.05
"""Pause before each call `time_in_turn` times: a runtime whose worker threads spin on after a call
(TensorFlow's, ONNX Runtime's) would otherwise take CPU from the next runtime timed."""


def time_in_turn(functions: dict[str, Callable[[], object]], rounds: int, log=None) -> dict[str, list[float]]:
    """``{name: [seconds per round]}``: every function once per round, in an order shuffled each round
    (seeded: the same in every run), each after a pause of `SETTLE_SECONDS`, so that a busy machine
    slows all alike and no function always follows the same one."""
    order = random.Random(0)
    seconds = {name: [] for name in functions}
    for round_index in range(rounds):
        names = list(functions)
        order.shuffle(names)
        for name in names:
            time.sleep(SETTLE_SECONDS)
            seconds[name].append(time_call(functions[name]))
        if log:
            log(f"round {round_index + 1}/{rounds}: "
                + ", ".join(f"{name} {values[-1] * 1000:.0f} ms" for name, values in seconds.items()))
    return seconds


def time_call(function: Callable[[], object]) -> float:
    """Seconds one call of `function` takes, by the wall clock."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started
