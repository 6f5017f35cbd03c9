"""Request metrics in the Prometheus text exposition format (version 0.0.4), written by hand.

Metric names follow tensorflow_model_server's (`:tensorflow:serving:...`);
the labels are model_name, model_version and status (the gRPC code name).
Latency is in microseconds, as TF Serving reports it.
"""

import bisect
import contextlib
import threading
from collections.abc import Iterator

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
IN_FLIGHT = ":impasto:serving:requests_in_flight"
LATENCY_BUCKETS_US = (1e3, 2.5e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 3e7, 6e7)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LABELS = ("model_name", "model_version", "status")


class _Histogram:
    """Cumulative-bucket histogram of one label set."""

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds, self.counts, self.total, self.count = bounds, [0] * len(bounds), 0.0, 0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, cumulative = [], 0
        for bound, count in zip(self.bounds, self.counts):
            cumulative += count
            out.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="{_number(bound)}"}} {cumulative}')
        out.append(f'{name}_bucket{{{labels}{"," if labels else ""}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {_number(self.total)}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


class Metrics:
    """Thread-safe request counters and histograms."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, ...], int] = {}
        self._latency: dict[tuple[str, ...], _Histogram] = {}
        self._batches: dict[tuple[str, ...], _Histogram] = {}
        self._in_flight = 0

    @contextlib.contextmanager
    def in_flight(self) -> Iterator[None]:
        """Counts the requests inside the block (the in-flight gauge)."""
        with self._lock:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def record_request(self, model: str, version: int | None, status: str, seconds: float) -> None:
        """Counts one finished request.

        Args:
            model: the requested model name.
            version: the version that served it; None when none was resolved (e.g. NOT_FOUND).
            status: the gRPC status code name ("OK", "INVALID_ARGUMENT", ...).
            seconds: wall time spent on it.
        """
        key = (model, "" if version is None else str(version), status)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._latency.setdefault(key, _Histogram(LATENCY_BUCKETS_US)).observe(seconds * 1e6)

    def record_batch(self, model: str, version: int, size: int) -> None:
        """Counts one executed batch of `size` examples."""
        with self._lock:
            self._batches.setdefault((model, str(version)), _Histogram(BATCH_BUCKETS)).observe(size)

    def render(self) -> str:
        """The metrics page."""
        with self._lock:
            lines = [f"# HELP {REQUEST_COUNT} The number of requests, by model, version and status.",
                     f"# TYPE {REQUEST_COUNT} counter"]
            lines += [f"{REQUEST_COUNT}{{{_labels(LABELS, key)}}} {count}"
                      for key, count in sorted(self._counts.items())]
            lines += [f"# HELP {REQUEST_LATENCY} Request latency in microseconds, by model, version and status.",
                      f"# TYPE {REQUEST_LATENCY} histogram"]
            for key, histogram in sorted(self._latency.items()):
                lines += histogram.lines(REQUEST_LATENCY, _labels(LABELS, key))
            lines += [f"# HELP {BATCH_SIZE} Examples per executed batch, by model and version.",
                      f"# TYPE {BATCH_SIZE} histogram"]
            for key, histogram in sorted(self._batches.items()):
                lines += histogram.lines(BATCH_SIZE, _labels(LABELS[:2], key))
            lines += [f"# HELP {IN_FLIGHT} Predict requests received and not yet answered.",
                      f"# TYPE {IN_FLIGHT} gauge", f"{IN_FLIGHT} {self._in_flight}"]
        return "\n".join(lines) + "\n"


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    return ",".join(f'{name}="{_escape(value)}"' for name, value in zip(names, values))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(int(value)) if float(value).is_integer() else repr(value)
