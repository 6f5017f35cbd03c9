"""The in-graph L-BFGS and Adam, checked against scipy and closed-form minima."""

import numpy as np
import pytest
import scipy.optimize
import tensorflow as tf

from impasto.model.optimize.optimizers import Adam, Lbfgs, OptimizerConfig, adam_update, make_optimizer


def _quadratic(size=40, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(size, size))
    a = (a @ a.T + size * np.eye(size)).astype(np.float32)
    b = rng.normal(size=size).astype(np.float32)
    a_tensor, b_tensor = tf.constant(a), tf.constant(b)

    def objective(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = 0.5 * tf.tensordot(x, tf.linalg.matvec(a_tensor, x), 1) - tf.tensordot(b_tensor, x, 1)
        return value, tape.gradient(value, x), tf.stack([value])

    return objective, a, b


def _rosenbrock(x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = tf.reduce_sum(100.0 * tf.square(x[1:] - tf.square(x[:-1])) + tf.square(1.0 - x[:-1]))
    return value, tape.gradient(value, x), tf.stack([value])


def test_lbfgs_finds_the_quadratic_minimum_like_scipy():
    objective, a, b = _quadratic()
    optimizer = Lbfgs(objective, 40, 1, OptimizerConfig(history_size=10, tolerance=0.0))
    optimizer.start(tf.zeros(40))
    optimizer.run(tf.constant(60))
    exact = np.linalg.solve(a, b)
    reference = scipy.optimize.minimize(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(40), jac=True,
                                        method="L-BFGS-B", options={"maxcor": 10})
    np.testing.assert_allclose(optimizer.x.numpy(), exact, atol=1e-4)
    assert float(optimizer.value) == pytest.approx(reference.fun, rel=1e-5)


def test_lbfgs_solves_rosenbrock_in_about_as_many_evaluations_as_scipy():
    optimizer = Lbfgs(_rosenbrock, 6, 1, OptimizerConfig(history_size=10, tolerance=0.0, max_line_search=20))
    optimizer.start(tf.fill([6], -1.0))
    optimizer.run(tf.constant(300))
    np.testing.assert_allclose(optimizer.x.numpy(), np.ones(6), atol=1e-2)
    reference = scipy.optimize.minimize(scipy.optimize.rosen, -np.ones(6), jac=scipy.optimize.rosen_der,
                                        method="L-BFGS-B", options={"maxcor": 10})
    assert int(optimizer.evaluations) < 3 * reference.nfev


def test_lbfgs_first_step_moves_a_large_white_noise_start():
    """A million pixels of white noise under a large objective (as a 512 px Gatys run from noise): torch's first
    step, min(1, 1 / |g|_1), changed the float32 value by less than its rounding and the run stopped at its start."""
    def squared_norm(x):
        return tf.reduce_sum(x * x), 2.0 * x, tf.zeros([1])

    start = tf.constant(np.random.default_rng(0).uniform(0.0, 255.0, 1_000_000).astype(np.float32))
    optimizer = Lbfgs(squared_norm, 1_000_000, 1, OptimizerConfig(history_size=3, tolerance=0.0))
    optimizer.start(start)
    first_value = float(optimizer.value)
    optimizer.run(tf.constant(3))
    assert float(optimizer.value) < 1e-3 * first_value


def test_lbfgs_history_is_kept_across_chunks():
    objective, _, _ = _quadratic(seed=1)
    whole = Lbfgs(objective, 40, 1, OptimizerConfig(tolerance=0.0))
    whole.start(tf.zeros(40))
    whole.run(tf.constant(6))
    chunked = Lbfgs(objective, 40, 1, OptimizerConfig(tolerance=0.0))
    chunked.start(tf.zeros(40))
    for _ in range(3):
        chunked.run(tf.constant(2))
    np.testing.assert_allclose(chunked.x.numpy(), whole.x.numpy(), rtol=1e-5, atol=1e-6)
    assert int(chunked.iterations) == int(whole.iterations) == 6  # Not yet converged: n = 40.


def test_an_lbfgs_iteration_usually_costs_one_evaluation():
    objective, _, _ = _quadratic(seed=2)
    optimizer = Lbfgs(objective, 40, 1, OptimizerConfig(tolerance=0.0))
    optimizer.start(tf.zeros(40))
    optimizer.run(tf.constant(8))
    assert int(optimizer.evaluations) <= 1 + 8 + 3  # Start, one per iteration, a few backtracks at most.


def test_tolerance_stops_early():
    objective, _, _ = _quadratic(seed=3)
    optimizer = Lbfgs(objective, 40, 1, OptimizerConfig(tolerance=1e-3))
    optimizer.start(tf.zeros(40))
    done = int(optimizer.run(tf.constant(500)))
    assert bool(optimizer.converged) and done < 500


def test_adam_descends_and_keeps_the_loss_parts():
    objective, a, b = _quadratic(seed=4)
    optimizer = make_optimizer(objective, 40, 1, OptimizerConfig(method="adam", learning_rate=0.05, tolerance=0.0))
    assert isinstance(optimizer, Adam)
    optimizer.start(tf.zeros(40))
    start_value = float(optimizer.value)
    optimizer.run(tf.constant(200))
    assert float(optimizer.value) < start_value
    assert float(optimizer.terms[0]) == pytest.approx(float(optimizer.value))
    exact_value = float(-0.5 * b @ np.linalg.solve(a, b))
    assert float(optimizer.value) == pytest.approx(exact_value, rel=0.05)


def _box_quadratic():
    """The quadratic with a box that excludes its minimum in most coordinates, and scipy's L-BFGS-B solution in it."""
    objective, a, b = _quadratic(seed=5)
    box = (0.0, 0.01)
    reference = scipy.optimize.minimize(lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b), np.zeros(40), jac=True,
                                        method="L-BFGS-B", bounds=[box] * 40,
                                        options={"maxcor": 10, "ftol": 0.0, "gtol": 1e-10})
    return objective, a, b, box, reference


def test_bounded_lbfgs_stays_in_the_box_and_reaches_scipy_box_minimum():
    objective, a, b, box, reference = _box_quadratic()
    exact = np.linalg.solve(a, b)
    assert np.mean((exact < box[0]) | (exact > box[1])) > 0.5  # The box binds: most coordinates end on a bound.
    optimizer = Lbfgs(objective, 40, 1, OptimizerConfig(history_size=10, tolerance=0.0), bounds=box)
    optimizer.start(tf.fill([40], 0.5))  # Outside the box: the start is projected onto it.
    assert optimizer.x.numpy().max() == box[1]
    for _ in range(10):
        optimizer.run(tf.constant(5))
        x = optimizer.x.numpy()
        assert x.min() >= box[0] and x.max() <= box[1]
    np.testing.assert_allclose(x, reference.x, atol=1e-5)
    assert float(optimizer.value) == pytest.approx(reference.fun, rel=1e-5)
    clipped = np.clip(exact, *box)  # What an unconstrained run delivers once clipped.
    assert float(optimizer.value) < 0.5 * clipped @ a @ clipped - b @ clipped - 1e-3 * abs(reference.fun)


def test_bounded_lbfgs_solves_a_boxed_rosenbrock_like_scipy():
    box = (-2.0, 0.5)  # Excludes the minimum at (1, ..., 1).
    optimizer = Lbfgs(_rosenbrock, 6, 1, OptimizerConfig(history_size=10, tolerance=0.0, max_line_search=20),
                      bounds=box)
    optimizer.start(tf.fill([6], -1.0))
    optimizer.run(tf.constant(300))
    reference = scipy.optimize.minimize(scipy.optimize.rosen, -np.ones(6), jac=scipy.optimize.rosen_der,
                                        method="L-BFGS-B", bounds=[box] * 6, options={"maxcor": 10})
    np.testing.assert_allclose(optimizer.x.numpy(), reference.x, atol=1e-3)
    assert float(optimizer.value) == pytest.approx(reference.fun, rel=1e-4, abs=1e-6)


def test_bounded_adam_stays_in_the_box_and_nears_its_minimum():
    objective, _, _, box, reference = _box_quadratic()
    optimizer = make_optimizer(objective, 40, 1, OptimizerConfig(method="adam", learning_rate=1e-3, tolerance=0.0),
                               bounds=box)
    optimizer.start(tf.fill([40], -1.0))
    for _ in range(20):
        optimizer.run(tf.constant(20))
        x = optimizer.x.numpy()
        assert x.min() >= box[0] and x.max() <= box[1]
    assert float(optimizer.value) == pytest.approx(reference.fun, rel=0.01)


def test_an_empty_box_is_refused():
    with pytest.raises(ValueError, match="low < high"):
        make_optimizer(_rosenbrock, 2, 1, OptimizerConfig(), bounds=(1.0, 1.0))


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(_rosenbrock, 2, 1, OptimizerConfig(method="sgd"))


def test_both_adams_take_the_steps_of_keras_adam():
    """The pixel optimizer and the training optimizer share `adam_update`; both match Keras' Adam step for step."""
    from impasto.training.adam import Adam as TrainingAdam

    rng = np.random.default_rng(4)
    start = rng.normal(size=[5]).astype(np.float32)
    gradients = [rng.normal(size=[5]).astype(np.float32) for _ in range(4)]
    keras_variable, training_variable = tf.Variable(start), tf.Variable(start)
    keras_adam = tf.keras.optimizers.Adam(learning_rate=0.1, epsilon=1e-8)
    training_adam = TrainingAdam([training_variable], learning_rate=0.1)
    first = second = tf.zeros([5])
    pixels = tf.constant(start)
    for step, gradient in enumerate(gradients, start=1):
        keras_adam.apply_gradients([(tf.constant(gradient), keras_variable)])
        training_adam.apply([tf.constant(gradient)], [training_variable])
        first, second, change = adam_update(tf.constant(gradient), first, second, tf.constant(float(step)), 0.1)
        pixels -= change
        np.testing.assert_allclose(training_variable.numpy(), keras_variable.numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(pixels.numpy(), keras_variable.numpy(), rtol=1e-6, atol=1e-7)
    assert np.abs(keras_variable.numpy() - start).max() > 0.1  # The steps moved the variable: a real comparison.
