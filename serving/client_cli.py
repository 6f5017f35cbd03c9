"""`impasto client`: stylizes image files or whole directories through a running server, concurrently.

Each output is DIR/<name>.png (files found in a directory keep their path below
it), written atomically. A file that fails is reported and the others still
complete; the exit code is 0 when all succeed, 2 when every failure was bad
input (an unreadable or corrupt image), 1 otherwise.
"""

import argparse
import concurrent.futures
import sys
from pathlib import Path

import grpc
from tqdm import tqdm

from impasto.export import keys
from impasto.model.cli_errors import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, reports_errors
from impasto.model.errors import InvalidInputError
from impasto.model.files import atomic_write_bytes
from impasto.serving.client import ServerMismatchError, StylizeClient, TlsOptions
from impasto.serving.client_flags import build_parser

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp"}
_BAD_INPUT_CODES = (grpc.StatusCode.INVALID_ARGUMENT,)


def find_images(inputs: list[str], out_dir: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs; directories are searched recursively for image files.

    Raises:
        InvalidInputError: no images at all.
    """
    pairs, taken = [], set()
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = [(file, file.relative_to(path)) for file in sorted(path.rglob("*"))
                     if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES]
        else:  # A missing or unreadable file fails on its own later, like a corrupt one.
            found = [(path, Path(path.name))]
        for source, relative in found:
            target = out_dir / relative.with_suffix(".png")
            counter = 2
            while target in taken:
                target = out_dir / relative.with_name(f"{relative.stem}-{counter}.png")
                counter += 1
            taken.add(target)
            pairs.append((source, target))
    if not pairs:
        raise InvalidInputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(inputs)}")
    return pairs


def _tls(args: argparse.Namespace) -> TlsOptions | None:
    if not (args.tls or args.ca_cert or args.client_cert or args.client_key):
        return None
    if bool(args.client_cert) != bool(args.client_key):
        raise InvalidInputError("--client-cert and --client-key go together")
    return TlsOptions(args.ca_cert, args.client_cert, args.client_key, args.server_name)


def _stylize_file(client: StylizeClient, source: Path, target: Path, controls: dict) -> None:
    """Reads, stylizes and writes one file; raises InvalidInputError or grpc.RpcError."""
    try:
        data = source.read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read ({error.strerror})") from None
    atomic_write_bytes(target, client.stylize(data, **controls))


@reports_errors
def run(argv: list[str]) -> int:
    """Stylizes every input; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.concurrency < 1:
        raise InvalidInputError("--concurrency must be at least 1")
    out_dir = Path(args.out)
    pairs = find_images(args.inputs, out_dir)
    controls = {}
    if args.strength is not None:
        controls["strength"] = args.strength
    if args.preserve_color:
        controls["preserve_color"] = True
    if controls and args.signature != keys.STYLIZE_CONTROLS:
        raise InvalidInputError(f"--strength and --preserve-color need --signature {keys.STYLIZE_CONTROLS}")
    try:
        client = StylizeClient(args.server, args.model, args.signature, version=args.version, version_label=args.label,
                               timeout=args.timeout, retries=args.retries, tls=_tls(args), max_workers=1)
    except ServerMismatchError as error:
        raise InvalidInputError(str(error)) from None
    except grpc.RpcError as error:
        print(f"impasto: error: cannot use {args.server}: {error.code().name}: {error.details()}", file=sys.stderr)
        return EXIT_FAILURE
    failures = {}
    with client, concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        futures = {pool.submit(_stylize_file, client, source, target, controls): source for source, target in pairs}
        progress = tqdm(total=len(futures), unit="image", disable=args.no_progress, file=sys.stderr)
        for future in concurrent.futures.as_completed(futures):
            error = future.exception()
            if error is not None:
                failures[futures[future]] = error
                progress.write(f"impasto: {futures[future]}: {_describe(error)}", file=sys.stderr)
            progress.update()
        progress.close()
    print(f"stylized {len(pairs) - len(failures)} of {len(pairs)} images into {out_dir}"
          + (f"; {len(failures)} failed" if failures else ""), file=sys.stderr)
    if not failures:
        return EXIT_OK
    all_bad_input = all(isinstance(error, InvalidInputError) or
                        (isinstance(error, grpc.RpcError) and error.code() in _BAD_INPUT_CODES)
                        for error in failures.values())
    return EXIT_BAD_INPUT if all_bad_input else EXIT_FAILURE


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)
