"""Adam for the transformer's variables inside a `tf.distribute` replica step.

Gradients are all-reduced first, so every replica computes the same update;
the variables (created under `first_replica_variables`) take the first
replica's value. The optimizer is a `tf.Module`, so its moments and step
count are part of the training checkpoint.
"""

import contextlib

import tensorflow as tf

from impasto.model.optimize.optimizers import adam_update


@contextlib.contextmanager
def first_replica_variables():
    """Creates variables with ONLY_FIRST_REPLICA aggregation, so replica-context assigns are allowed."""

    def creator(next_creator, **kwargs):
        kwargs["aggregation"] = tf.VariableAggregation.ONLY_FIRST_REPLICA
        return next_creator(**kwargs)

    with tf.variable_creator_scope(creator):
        yield


class Adam(tf.Module):
    """Adam (Kingma and Ba 2015) with bias correction: `impasto.model.optimize.optimizers.adam_update` on each variable.

    Args:
        variables: the variables it updates, in a fixed order.
        learning_rate: step size.
    """

    def __init__(self, variables, learning_rate: float, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8):
        super().__init__(name="adam")
        self.learning_rate = tf.Variable(learning_rate, trainable=False, name="learning_rate")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.first_moments = [tf.Variable(tf.zeros_like(v), trainable=False, name="m") for v in variables]
        self.second_moments = [tf.Variable(tf.zeros_like(v), trainable=False, name="v") for v in variables]
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def apply(self, gradients, variables) -> None:
        """One update from already all-reduced gradients (call in replica context)."""
        step = tf.cast(self.iterations + 1, tf.float32)
        for variable, gradient, m, v in zip(variables, gradients, self.first_moments, self.second_moments):
            first, second, change = adam_update(gradient, m, v, step, self.learning_rate, self.beta1, self.beta2,
                                                self.epsilon)
            m.assign(first)
            v.assign(second)
            variable.assign_sub(change)
        self.iterations.assign_add(1)
