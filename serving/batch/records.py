"""The manifest (what was done) and the dead letters (what could not be), as JSON lines under the output folder.

While a job runs, each worker records its results in small part files under
``DIR/.impasto-batch/`` (one new file every few seconds, written whole), so a
killed job loses at most those seconds of records; work whose record was lost
is simply done again (its output is rewritten whole, never twice). When the
job ends, the parts are merged into ``DIR/manifest.jsonl`` and
``DIR/dead_letter.jsonl``. A rerun reads both, and the parts of a killed run,
and skips every input already recorded.

Manifest line: ``{"input", "output", "model", "size": [width, height], "ms"}``.
Dead-letter line: ``{"input", "model", "reason"}`` (model null when the file
itself is bad).
"""

import json
import time
import uuid

import apache_beam as beam

from impasto.serving.batch import paths

MANIFEST = "manifest"
DEAD_LETTER = "dead_letter"
PARTS_FOLDER = ".impasto-batch"


def final_path(output_dir: str, kind: str) -> str:
    """``DIR/manifest.jsonl`` or ``DIR/dead_letter.jsonl``."""
    return paths.join(output_dir, f"{kind}.jsonl")


def part_pattern(output_dir: str, kind: str) -> str:
    return paths.join(output_dir, PARTS_FOLDER, f"{kind}-*.jsonl")


def record_files(output_dir: str, kind: str) -> list[str]:
    """The merged file (if any) and the part files of one kind."""
    merged = final_path(output_dir, kind)
    return ([merged] if paths.exists(merged) else []) + paths.match(part_pattern(output_dir, kind))


def read_records(path: str) -> list[dict]:
    """The records of one JSONL file; a line cut short (a killed write to a merged file) is dropped."""
    records = []
    for line in paths.read_bytes(path).decode().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def record_key(record: dict) -> tuple[str, str | None]:
    """What a record is about: (input, model); one record per key is kept."""
    return record["input"], record.get("model")


class WriteRecordParts(beam.DoFn):
    """Writes the records reaching it as part files, every `flush_seconds` and at the end of each bundle.

    Args:
        output_dir: the job's output folder.
        kind: MANIFEST or DEAD_LETTER.
        flush_seconds: the longest a record waits before it is written (what a kill can lose).
    """

    def __init__(self, output_dir: str, kind: str, flush_seconds: float):
        self.output_dir, self.kind, self.flush_seconds = output_dir, kind, flush_seconds

    def start_bundle(self):
        self._pending, self._since = [], None

    def process(self, record: dict):
        self._pending.append(record)
        if self._since is None:
            self._since = time.monotonic()
        if time.monotonic() - self._since >= self.flush_seconds:
            self._flush()

    def finish_bundle(self):
        self._flush()

    def _flush(self):
        if self._pending:
            name = f"{self.kind}-{uuid.uuid4().hex}.jsonl"
            data = "".join(json.dumps(record) + "\n" for record in self._pending).encode()
            paths.write_bytes_atomically(paths.join(self.output_dir, PARTS_FOLDER, name), data)
        self._pending, self._since = [], None


def merge_parts(output_dir: str, kind: str) -> int:
    """Merges the part files into the final JSONL (sorted, one record per key), then deletes them.

    Does nothing, and writes nothing, when there are no parts.

    Returns:
        The number of records the parts held (this run's, and a killed run's).
    """
    parts = paths.match(part_pattern(output_dir, kind))
    if not parts:
        return 0
    added = sum(len(read_records(path)) for path in parts)
    records = {}
    for path in record_files(output_dir, kind):
        for record in read_records(path):
            records[record_key(record)] = record
    ordered = [records[key] for key in sorted(records, key=lambda key: (key[0], key[1] or ""))]
    paths.write_bytes_atomically(final_path(output_dir, kind),
                                 "".join(json.dumps(record) + "\n" for record in ordered).encode())
    paths.delete(parts)
    return added
