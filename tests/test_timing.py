"""`time_in_turn`: every function timed once a round, in an order that changes between rounds."""

import time

from impasto.model.timing import time_in_turn


def test_each_function_runs_once_a_round_in_changing_orders():
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in "abcd"}
    seconds = time_in_turn(functions, rounds=6)
    assert sorted(seconds) == list("abcd") and all(len(values) == 6 for values in seconds.values())
    rounds = [tuple(calls[index:index + 4]) for index in range(0, 24, 4)]
    assert all(sorted(order) == list("abcd") for order in rounds)
    assert len(set(rounds)) > 1  # Not always the same order.


def test_the_times_are_the_calls_own():
    seconds = time_in_turn({"quick": lambda: None, "slow": lambda: time.sleep(0.03)}, rounds=3)
    assert min(seconds["slow"]) >= 0.03 > max(seconds["quick"])  # The settling pause is not counted.
