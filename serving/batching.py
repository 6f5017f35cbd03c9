"""Server-side batching: concurrent requests with compatible inputs run as one call, like TF Serving's
BasicBatchScheduler.

Requests join the open batch for their signature and per-example input shape
(so string batches of images of any size always combine, and float image
tensors combine only at the same height and width). A batch closes when it
holds `max_batch_size` examples or its oldest request has waited
`batch_timeout_micros`; `num_batch_threads` threads run closed batches, and at
most `max_enqueued_batches` batches (open or closed) may wait, beyond which a
request is refused with RESOURCE_EXHAUSTED. Outputs are split back along the
first dimension. If a combined call fails on bad input, each request of the
batch is run alone, so one corrupt image fails only its own request. A request
whose client goes away (its `cancelled` event is set) while it waits leaves its
batch and is never run.
"""

import collections
import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np

from impasto.export.tfserving_config import BatchingConfig
from impasto.model.errors import InvalidInputError
from impasto.serving.errors import CancelledError, DeadlineExceededError, ResourceExhaustedError, UnavailableError
from impasto.serving.tensors import Arrays

RunFunction = Callable[[str, Arrays], Arrays]
"""(signature name, inputs) -> outputs, every array batched along its first dimension."""
CANCEL_POLL_SECONDS = 0.1
"""How often a waiting request looks at its `cancelled` event."""


@dataclasses.dataclass(eq=False)
class _Task:
    inputs: Arrays
    size: int
    deadline: float | None
    cancelled: threading.Event | None = None
    batch: "_Batch | None" = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: Arrays | None = None
    error: BaseException | None = None

    def finish(self, outputs: Arrays | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


@dataclasses.dataclass(eq=False)
class _Batch:
    key: tuple
    signature: str
    opened: float
    tasks: list[_Task] = dataclasses.field(default_factory=list)
    size: int = 0
    taken: bool = False  # A batch thread has it: its requests will run.


class Batcher:
    """Batches calls to one servable version.

    Args:
        run: runs one (possibly combined) batch.
        options: the batching parameters.
        on_batch: called with each executed batch's size (for metrics); optional.
    """

    def __init__(self, run: RunFunction, options: BatchingConfig, on_batch: Callable[[int], None] | None = None):
        self._run, self._options, self._on_batch = run, options, on_batch
        self._timeout = options.batch_timeout_micros / 1e6
        self._cond = threading.Condition()
        self._open: dict[tuple, _Batch] = {}
        self._closed: collections.deque[_Batch] = collections.deque()
        self._stopping = False
        self._threads = [threading.Thread(target=self._work, name=f"batch-{i}", daemon=True)
                         for i in range(options.num_batch_threads)]
        for thread in self._threads:
            thread.start()

    def submit(self, signature: str, inputs: Arrays, size: int, deadline: float | None = None,
               cancelled: threading.Event | None = None) -> Arrays:
        """Queues one request and blocks until its batch has run.

        Args:
            signature: the signature to run.
            inputs: the request's checked inputs, batched along the first dimension.
            size: the request's batch size.
            deadline: `time.monotonic()` after which the request is dropped unrun; None for no deadline.
            cancelled: set when the client goes away; the request then leaves the queue unrun.

        Returns:
            The request's own slice of the outputs.

        Raises:
            InvalidInputError: the request alone exceeds max_batch_size, or its inputs are bad.
            ResourceExhaustedError: the queue is full.
            DeadlineExceededError: the deadline passed while it waited.
            CancelledError: `cancelled` was set before the request ran.
        """
        if size > self._options.max_batch_size:
            raise InvalidInputError(f"Task size {size} is larger than maximum input batch size "
                                    f"{self._options.max_batch_size}")
        task = _Task(inputs, size, deadline, cancelled)
        key = (signature, tuple((name, array.dtype.str, array.shape[1:]) for name, array in sorted(inputs.items())))
        with self._cond:
            if self._stopping:
                raise UnavailableError("this model version is being unloaded")
            batch = self._open.get(key)
            if batch is not None and batch.size + size > self._options.max_batch_size:
                self._closed.append(self._open.pop(key))
                batch = None
            if batch is None:
                if len(self._open) + len(self._closed) >= self._options.max_enqueued_batches:
                    raise ResourceExhaustedError("The batch scheduling queue to which this task was submitted is full")
                batch = self._open[key] = _Batch(key, signature, time.monotonic())
            batch.tasks.append(task)
            task.batch = batch
            batch.size += size
            if batch.size == self._options.max_batch_size:
                self._closed.append(self._open.pop(key))
            self._cond.notify_all()
        while not task.done.wait(None if cancelled is None else CANCEL_POLL_SECONDS):
            if cancelled.is_set() and self._withdraw(task):
                raise CancelledError("the client cancelled the request while it waited for a batch")
        if task.error is not None:
            raise task.error
        return task.outputs

    def _withdraw(self, task: _Task) -> bool:
        """Takes a waiting task out of its batch; False when a batch thread already has it."""
        with self._cond:
            batch = task.batch
            if batch.taken:
                return False
            batch.tasks.remove(task)
            batch.size -= task.size
            if not batch.tasks:
                if self._open.get(batch.key) is batch:
                    del self._open[batch.key]
                else:
                    self._closed.remove(batch)
            return True

    def close(self) -> None:
        """Runs every queued request, then stops the batch threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> _Batch | None:
        """Waits (holding the condition) for a batch to run; None once stopping and nothing is left."""
        while True:
            now = time.monotonic()
            for key, batch in list(self._open.items()):
                if self._stopping or now - batch.opened >= self._timeout:
                    self._closed.append(self._open.pop(key))
            if self._closed:
                batch = self._closed.popleft()
                batch.taken = True
                return batch
            if self._stopping:
                return None
            waits = [batch.opened + self._timeout - now for batch in self._open.values()]
            self._cond.wait(min(waits) if waits else None)

    def _execute(self, batch: _Batch) -> None:
        now = time.monotonic()
        live = []
        for task in batch.tasks:
            if task.deadline is not None and now > task.deadline:
                task.finish(error=DeadlineExceededError("Deadline exceeded while the request waited for a batch"))
            elif task.cancelled is not None and task.cancelled.is_set():
                task.finish(error=CancelledError("the client cancelled the request while it waited for a batch"))
            else:
                live.append(task)
        if not live:
            return
        try:
            self._run_together(batch.signature, live)
        except InvalidInputError as error:
            if len(live) == 1:
                live[0].finish(error=error)
                return
            for task in live:  # Find the request with the bad input; the others still succeed.
                try:
                    self._run_together(batch.signature, [task])
                except Exception as single_error:  # noqa: BLE001 - handed to the waiting request.
                    task.finish(error=single_error)
        except Exception as error:  # noqa: BLE001 - handed to every waiting request.
            for task in live:
                task.finish(error=error)

    def _run_together(self, signature: str, tasks: list[_Task]) -> None:
        """Runs `tasks` as one call and hands each its slice of the outputs."""
        if len(tasks) == 1:
            merged = tasks[0].inputs
        else:
            merged = {name: np.concatenate([task.inputs[name] for task in tasks]) for name in tasks[0].inputs}
        total = sum(task.size for task in tasks)
        if self._on_batch is not None:
            self._on_batch(total)
        outputs = self._run(signature, merged)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise RuntimeError(f"output '{name}' has shape {list(array.shape)}, not a batch of {total}")
        offsets = np.cumsum([task.size for task in tasks])[:-1]
        parts = {name: np.split(array, offsets) for name, array in outputs.items()}
        for index, task in enumerate(tasks):
            task.finish({name: pieces[index] for name, pieces in parts.items()})
