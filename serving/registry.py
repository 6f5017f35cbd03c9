"""The served models: which versions exist on disk, which the policy wants, loading, switching and unloading.

Semantics follow tensorflow_model_server's file-system source and its
availability-preserving policy:

- A model is a base directory holding one directory per version, named by its
  integer version number. Other names (such as the exporter's dot-prefixed
  temporary directory) are ignored.
- The version policy picks the wanted versions: latest N (default 1), all, or
  specific numbers. Version labels map names to numbers.
- A wanted version is loaded (and its warmup requests replayed) before any old
  version is unloaded; an old version leaves the routing table at once but is
  freed only after its requests in flight finish.
- A version that fails to load is reported (END with its error) and not tried
  again until its directory changes; the versions already serving stay.
- Models load side by side: the first poll (at start-up) in up to 4 threads per
  CPU, as ServerCore's ``num_initial_load_threads``; later polls and config
  reloads in ``--num_load_threads`` threads, serially when it is 0 (TF Serving's
  default). Versions of one model load one after another, newest first.

Paths are confined: every model's base path must resolve (symlinks and ``..``
followed) inside the model root, and every version directory inside its model's
base path. A version directory that is a symlink out of its base path is
reported like a corrupt one and never loaded.
"""

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from impasto.model.cpu import usable_cpus
from impasto.model.errors import InvalidInputError
from impasto.serving.config import check_model_server_config, resolves_inside
from impasto.serving.errors import NotFoundError
from impasto.serving.servable import Servable

LOG = logging.getLogger("impasto.serving")
Loader = Callable[[str, int, Path], Servable]
UNKNOWN_ERROR_CODE = 2  # tensorflow.error.Code.UNKNOWN


def initial_load_threads() -> int:
    """Threads for the start-up loads: 4 per CPU this process may run on, as TF Serving's ServerCore."""
    return 4 * usable_cpus()


class VersionState:
    """The load state of one version, with TF Serving's state names."""

    def __init__(self, state: str, error_message: str = "", error_code: int = 0):
        self.state, self.error_message, self.error_code = state, error_message, error_code


class Registry:
    """Holds every configured model's loaded versions.

    Args:
        config: which models to serve.
        loader: builds a `Servable` from (name, version, directory); raises when the version cannot serve.
        model_root: every base path must resolve inside it, now and in later configs; None for anywhere.
        load_threads: models loaded side by side after the first poll; 0 loads them one after another.
        first_load_threads: models loaded side by side by the first poll (start-up).

    Raises:
        InvalidInputError: an invalid config, or a base path outside `model_root`.
    """

    def __init__(self, config: model_server_config_pb2.ModelServerConfig, loader: Loader,
                 model_root: str | os.PathLike | None = None, load_threads: int = 0, first_load_threads: int = 0):
        self._model_root = model_root
        self._load_threads, self._first_load_threads = load_threads, first_load_threads
        self._polled = False
        check_model_server_config(config, model_root)
        self._loader = loader
        self._lock = threading.Lock()  # Guards the tables below; held only briefly.
        self._update_lock = threading.Lock()  # Serialises polls and config reloads.
        self._configs = {entry.name: entry for entry in config.model_config_list.config}
        self._servables: dict[str, dict[int, Servable]] = {name: {} for name in self._configs}
        self._states: dict[str, dict[int, VersionState]] = {name: {} for name in self._configs}
        self._failed: dict[tuple[str, int], tuple] = {}  # Versions that failed, by their directory's fingerprint.
        self._unreadable: set[str] = set()  # Models whose base path could not be listed (warned once).
        self._unloaders: list[threading.Thread] = []
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    def model_names(self) -> list[str]:
        """The configured models, sorted."""
        with self._lock:
            return sorted(self._configs)

    @contextlib.contextmanager
    def servable(self, name: str, version: int | None = None, label: str = "") -> Iterator[Servable]:
        """Yields a loaded version, counted in flight until the block exits.

        Args:
            name: the model.
            version: a version number; None (or 0) with no label for the latest loaded version.
            label: a version label from the model's config.

        Raises:
            InvalidInputError: no model name, or an unknown label (looked up first, as TF Serving does).
            NotFoundError: unknown model or version, in TF Serving's words.
        """
        _check_name(name)
        with self._lock:
            if label:
                version = self._label_version(name, label)
            if name not in self._configs:
                raise NotFoundError(f"Servable not found for request: "
                                    f"{f'Specific({name}, {version})' if version else f'Latest({name})'}")
            loaded = self._servables[name]
            if version:
                servable = loaded.get(version)
                if servable is None:
                    raise NotFoundError(f"Servable not found for request: Specific({name}, {version})")
            elif loaded:
                servable = loaded[max(loaded)]
            else:
                raise NotFoundError(f"Servable not found for request: Latest({name})")
            servable.acquire()
        try:
            yield servable
        finally:
            servable.release()

    def _label_version(self, name: str, label: str) -> int:
        """The version a label names (call with the lock held).

        Raises:
            InvalidInputError: the model has no such label (TF Serving's INVALID_ARGUMENT).
        """
        config = self._configs.get(name)
        if config is None or label not in config.version_labels:
            raise InvalidInputError(f"Unrecognized servable version label: {label}")
        return config.version_labels[label]

    def states(self, name: str, version: int | None = None) -> list[tuple[int, VersionState]]:
        """(version, state) for every version seen, or just `version`.

        Raises:
            InvalidInputError: no model name.
            NotFoundError: unknown model, or a version never seen.
        """
        _check_name(name)
        with self._lock:
            if name not in self._states or not self._states[name]:
                raise NotFoundError(f"Could not find any versions of model {name}")
            states = self._states[name]
            if version:
                if version not in states:
                    raise NotFoundError(f"Could not find version {version} of model {name}")
                return [(version, states[version])]
            return sorted(states.items())

    def poll(self) -> None:
        """Compares every model's directory with what is loaded; loads, then unloads, to match."""
        with self._update_lock:
            threads = self._load_threads if self._polled else self._first_load_threads
            self._polled = True
            self._update_models(self.model_names(), threads)

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Replaces the model list: new models load now, dropped models unload (after their in-flight requests).

        Raises:
            InvalidInputError: an invalid config, or a base path outside the model root (the old config stays).
        """
        check_model_server_config(config, self._model_root)
        with self._update_lock:
            entries = {entry.name: entry for entry in config.model_config_list.config}
            with self._lock:
                dropped = [name for name in self._configs if name not in entries]
                self._configs = entries
                for name in entries:
                    self._servables.setdefault(name, {})
                    self._states.setdefault(name, {})
            for name in dropped:
                self._retire(name, list(self._servables[name]))
                with self._lock:
                    del self._servables[name], self._states[name]
            self._update_models(entries, self._load_threads)

    def start_polling(self, interval_seconds: float) -> None:
        """Polls in a background thread every `interval_seconds` (0: never)."""
        if interval_seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - one bad poll must not end polling.
                    LOG.exception("polling the model directories failed")

        self._poller = threading.Thread(target=loop, name="version-poller", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        """Stops polling and unloads everything once its requests in flight finish."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        with self._update_lock:
            for name in self.model_names():
                self._retire(name, list(self._servables[name]))
        for thread in list(self._unloaders):
            thread.join()

    def _update_models(self, names: Iterable[str], threads: int) -> None:
        """`_update_model` for each name, in `threads` threads side by side (0 or 1: one after another)."""
        names = list(names)
        if threads <= 1 or len(names) <= 1:
            for name in names:
                self._update_model(name)
            return
        with ThreadPoolExecutor(min(threads, len(names)), thread_name_prefix="load") as pool:
            for done in [pool.submit(self._update_model, name) for name in names]:
                done.result()

    def _update_model(self, name: str) -> None:
        config = self._configs[name]
        confined = self._model_root is None or resolves_inside(config.base_path, self._model_root)
        found = _version_dirs(config.base_path) if confined else None
        if found is None:
            if name not in self._unreadable:
                LOG.warning("model %s: base path %s does not exist, cannot be read or resolves outside the model root",
                            name, config.base_path)
                self._unreadable.add(name)
            return
        self._unreadable.discard(name)
        wanted = _apply_policy(config.model_version_policy, sorted(found))
        for version in sorted(wanted, reverse=True):
            if version not in self._servables[name]:
                self._load(name, version, found[version])
        loaded = self._servables[name]
        if not wanted or any(version in loaded for version in wanted):
            self._retire(name, [version for version in loaded if version not in wanted])

    def _load(self, name: str, version: int, path: Path) -> None:
        fingerprint = _fingerprint(path)
        if self._failed.get((name, version)) == fingerprint:
            return
        self._set_state(name, version, VersionState("LOADING"))
        LOG.info("loading %s version %d from %s", name, version, path)
        try:
            base_path = self._configs[name].base_path
            if not resolves_inside(path, base_path):
                raise InvalidInputError(f"version directory {path} resolves to {path.resolve()}, outside the "
                                        f"model's base path {Path(base_path).resolve()}; not loaded")
            servable = self._loader(name, version, path)
        except Exception as error:  # noqa: BLE001 - any failure means this version does not serve.
            self._failed[(name, version)] = fingerprint
            code = error.error_code if isinstance(error, tf.errors.OpError) else UNKNOWN_ERROR_CODE
            message = f"{type(error).__name__}: {error}".strip()
            self._set_state(name, version, VersionState("END", message, code))
            LOG.error("model %s version %d failed to load: %s", name, version, message)
            return
        self._failed.pop((name, version), None)
        with self._lock:
            self._servables[name][version] = servable
            self._states[name][version] = VersionState("AVAILABLE")
        LOG.info("model %s version %d is available", name, version)

    def _retire(self, name: str, versions: list[int]) -> None:
        """Takes versions out of routing now; frees each in a thread once its requests finish."""
        for version in versions:
            with self._lock:
                servable = self._servables[name].pop(version)
                self._states[name][version] = VersionState("UNLOADING")

            def unload(servable=servable, version=version) -> None:
                servable.unload()
                self._set_state(name, version, VersionState("END"))
                LOG.info("model %s version %d unloaded", name, version)

            thread = threading.Thread(target=unload, name=f"unload-{name}-{version}", daemon=True)
            self._unloaders = [t for t in self._unloaders if t.is_alive()] + [thread]
            thread.start()

    def _set_state(self, name: str, version: int, state: VersionState) -> None:
        with self._lock:
            if name in self._states:
                self._states[name][version] = state


def _check_name(name: str) -> None:
    """Refuses a request without a model name, as TF Serving's ServerCore does (INVALID_ARGUMENT)."""
    if not name:
        raise InvalidInputError("ModelSpec has no name specified.")


def _version_dirs(base_path: str) -> dict[int, Path] | None:
    """{version: directory} for the integer-named subdirectories; None when the base path is unreadable."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return None
    return {int(entry.name): Path(entry.path) for entry in entries
            if entry.name.isdigit() and entry.is_dir() and int(entry.name) > 0}


def _apply_policy(policy, versions: list[int]) -> set[int]:
    """The versions a ServableVersionPolicy wants among those on disk (sorted ascending)."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(versions)
    if choice == "specific":
        return set(policy.specific.versions) & set(versions)
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return set(versions[-count:])


def _fingerprint(path: Path) -> tuple:
    """Where a version directory resolves to, and (file, size, mtime) of everything under it: changes when it is
    rewritten or re-pointed."""
    entries = [str(path.resolve())]
    for folder, _, files in os.walk(path):
        for file_name in files:
            with contextlib.suppress(OSError):
                stat = os.stat(os.path.join(folder, file_name))
                entries.append((os.path.relpath(os.path.join(folder, file_name), path), stat.st_size, stat.st_mtime_ns))
    return entries[0], tuple(sorted(entries[1:]))
