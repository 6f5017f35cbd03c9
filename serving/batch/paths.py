"""Inputs and outputs on any Beam filesystem: matching, relative paths, whole-file reads and atomic writes.

Local paths and every filesystem Beam has (``gs://``, ``s3://`` with Beam's extras)
go through `apache_beam.io.filesystems.FileSystems`. Local writes go through a
temporary file and a rename (`impasto.model.files.atomic_write_bytes`); object
stores make an object visible only when its upload completes, so a reader never
sees half a file on either.
"""

import os
import re
from pathlib import PurePosixPath

from apache_beam.io.filesystems import FileSystems

from impasto.model.errors import InvalidInputError
from impasto.model.files import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
"""What a folder given as --input is searched for (a glob matches whatever it says)."""

_WILDCARD = re.compile(r"[*?\[]")


def is_local(path: str) -> bool:
    """Whether `path` is on the local filesystem (no ``scheme://``)."""
    return FileSystems.get_scheme(path) is None


def input_pattern(text: str) -> tuple[str, str, bool]:
    """Turns an --input value into a Beam glob, the base its relative paths start from, and folder mode.

    A folder ``DIR`` (on an object store: ``scheme://bucket/DIR/``, with the slash) becomes ``DIR/**``
    (only image files are kept, hidden ones skipped);
    a glob's base is its longest leading path without a wildcard (``photos/**/*.jpg`` -> ``photos``).

    Returns:
        (pattern, base, is_folder).
    """
    folder = text.rstrip("/") or "/"
    if not _WILDCARD.search(text) and (os.path.isdir(folder) if is_local(text) else text.endswith("/")):
        return join(folder, "**"), folder, True
    head = _WILDCARD.split(text, maxsplit=1)[0]
    base = head.rsplit("/", 1)[0] if "/" in head else ""
    return text, base, False


def relative_path(path: str, base: str) -> str:
    """`path` below `base`, with '/' separators (a path outside `base` keeps its name only)."""
    prefix = base.rstrip("/") + "/" if base else ""
    if prefix and path.startswith(prefix):
        return path[len(prefix):]
    if not base and not path.startswith("/") and "://" not in path:
        return path
    return PurePosixPath(path).name


def wanted_in_folder(relative: str) -> bool:
    """Folder mode keeps image files and skips hidden files and folders (dot names, temporaries)."""
    parts = relative.split("/")
    return parts[-1].lower().endswith(IMAGE_SUFFIXES) and not any(part.startswith(".") for part in parts)


def join(base: str, *parts: str) -> str:
    """Joins path parts for local and remote filesystems alike."""
    if is_local(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *parts])  # Object stores: '/'-separated keys, whatever the client installed.


def match(pattern: str) -> list[str]:
    """Every file `pattern` matches (empty when none), sorted."""
    result = FileSystems.match([pattern])[0]
    return sorted(metadata.path for metadata in result.metadata_list)


def matches_any(pattern: str) -> bool:
    """Whether `pattern` matches at least one file (lists no more than that)."""
    return bool(FileSystems.match([pattern], limits=[1])[0].metadata_list)


def read_bytes(path: str) -> bytes:
    """A whole file's contents.

    Raises:
        InvalidInputError: the file cannot be read.
    """
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read()
    except Exception as error:  # Each filesystem raises its own types (IOError, BeamIOError, ...).
        raise InvalidInputError(f"{path}: cannot read ({type(error).__name__}: {error})") from None


def write_bytes_atomically(path: str, data: bytes) -> None:
    """Writes a whole file so that a reader sees either nothing or all of it."""
    if is_local(path):
        atomic_write_bytes(path, data)
        return
    with FileSystems.create(path, mime_type="application/octet-stream", compression_type="uncompressed") as handle:
        handle.write(data)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)
