"""Every bad input through every entry point, against the real CLIs and a real `impasto serve`: one table.

It exports a tiny random network (width 0.125, one 64 px bucket, no XLA) as a
SavedModel and as a .npz bundle, starts `impasto serve` on it (loopback, with
``--max_request_bytes`` lowered so the size limit can be shown), and sends each
file of tests/data/edge_* through:

* ``stylize_cli``: ``impasto stylize --method fast --model BUNDLE FILE --out ...`` (a child process);
* ``train_pipeline``: the training photo pipeline on a folder holding only that file;
* ``export``: n/a (it takes a trained network, not an image);
* ``server_grpc`` / ``server_rest``: Predict with the file as ``image_bytes``;
* ``client_cli``: ``impasto client FILE --server ... --model ...`` (a child process).

Then malformed requests (wrong dtype, wrong rank, missing or extra key, empty or
oversized batch, an inflated shape, a path-like model name, an oversized body)
go through both server front ends. Each outcome is ``converted``, ``refused`` (the
defined refusal: exit 2, INVALID_ARGUMENT, HTTP 400, skipped) or ``failed``
(anything else); see bench/bad_input_probes.py. The Markdown tables go to stdout,
then ONE JSON object on the last line; progress goes to stderr.

Example:
    .venv/bin/python bench/bad_inputs.py
    .venv/bin/python bench/bad_inputs.py --in-process   # CLIs called in this process: faster, same code
"""

import argparse
import sys
import time
from pathlib import Path

from impasto.model.tensorflow_import import import_tensorflow_quietly

import_tensorflow_quietly()  # First: the imports below load TensorFlow, whose start-up lines stay off stderr.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bad_input_probes as probes  # noqa: E402  (bench/bad_input_probes.py)
import common  # noqa: E402  (bench/common.py)
import grpc  # noqa: E402
from harness import ServeProcess, work_dir  # noqa: E402  (bench/harness.py)
from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: E402

ENTRY_POINTS = ("stylize_cli", "train_pipeline", "export", "server_grpc", "server_rest", "client_cli")
MODEL = "tiny"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", nargs="*", type=Path,
                        help="input files (default: tests/data/edge_*)")
    parser.add_argument("--entry-points", default=",".join(ENTRY_POINTS),
                        help=f"comma-separated subset of {','.join(ENTRY_POINTS)}")
    parser.add_argument("--in-process", action="store_true",
                        help="call the stylize and client CLIs' run() here instead of starting a process per file")
    parser.add_argument("--max-request-bytes", type=int, default=4 * 1024 * 1024,
                        help="the server's --max_request_bytes (default 4 MiB)")
    parser.add_argument("--max-batch-size", type=int, default=8,
                        help="the server's --max_request_batch_size (default 8)")
    parser.add_argument("--work", type=Path, help="keep the exports, outputs and server log here (default: a temp dir)")
    return parser


def export_tiny(work: Path) -> tuple[Path, Path]:
    """(model directory with version 1, .npz bundle) of one random width-0.125 network."""
    from impasto.export.exporter import export_model
    from impasto.export.signatures import ServingConfig
    from impasto.model.feedforward.bundles import write_bundle
    from impasto.model.feedforward.transformer import TransformerNet

    network, metadata = TransformerNet(width=0.125, seed=0), {"width": 0.125, "style": "random"}
    config = ServingConfig(max_side=64, ladder=(64,), target="cpu")
    export_model(network, metadata, work / "models" / MODEL, 1, config, source="random", warmup_sizes=((64, 64),))
    write_bundle(network, metadata, work / "tiny.npz")
    return work / "models" / MODEL, work / "tiny.npz"


def probe_files(files: list[Path], entry_points: list[str], server: ServeProcess, bundle: Path, work: Path,
                in_process: bool) -> dict:
    """{file name: {entry point: Outcome}}."""
    results = {}
    with grpc.insecure_channel(server.target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        for path in files:
            common.log(f"{path.name} ...")
            out = work / "out" / path.stem
            row = {}
            for entry in entry_points:
                if entry == "stylize_cli":
                    row[entry] = probes.stylize_cli(path, bundle, out / "stylize", in_process)
                elif entry == "train_pipeline":
                    row[entry] = probes.train_pipeline(path)
                elif entry == "export":
                    row[entry] = probes.Outcome("n/a", "")
                elif entry == "server_grpc":
                    row[entry] = probes.server_grpc(predict, MODEL, path.read_bytes())
                elif entry == "server_rest":
                    row[entry] = probes.server_rest(server.rest_url, MODEL, path.read_bytes())
                elif entry == "client_cli":
                    row[entry] = probes.client_cli(path, server.target, MODEL, out / "client", in_process)
            results[path.name] = row
    return results


def probe_requests(server: ServeProcess, args) -> dict:
    """{case name: {"server_grpc": Outcome, "server_rest": Outcome}}."""
    image = (probes.DATA_DIR / "edge_1x1.png").read_bytes()
    results = {}
    with grpc.insecure_channel(server.target) as channel:
        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
        for case in probes.request_cases(image, args.max_batch_size, args.max_request_bytes):
            common.log(f"request: {case.name} ...")
            results[case.name] = {"server_grpc": probes.grpc_case(predict, MODEL, case),
                                  "server_rest": probes.rest_case(server.rest_url, MODEL, case)}
    return results


def markdown(title: str, rows: dict, columns: list[str]) -> str:
    lines = [f"### {title}", "", "| input | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(row[column].cell() for column in columns) + " |")
    return "\n".join(lines)


def expected_status(name: str) -> str | None:
    """What every entry point should do with a file: converted, refused, or None when it is not an edge case."""
    return "converted" if name in probes.CONVERTED else "refused" if name in probes.REFUSED else None


def run(args, work: Path) -> dict:
    entry_points = [entry for entry in args.entry_points.split(",") if entry]
    unknown = set(entry_points) - set(ENTRY_POINTS)
    if unknown:
        raise SystemExit(f"unknown entry points {sorted(unknown)}")
    files = args.files or sorted(probes.DATA_DIR.glob("edge_*"))
    common.log("exporting a tiny model ...")
    model_dir, bundle = export_tiny(work)
    started = time.monotonic()
    with ServeProcess(["--model_base_path", model_dir, "--model_name", MODEL, "--file_system_poll_wait_seconds", 0,
                       "--max_request_bytes", args.max_request_bytes,
                       "--max_request_batch_size", args.max_batch_size], work / "serve.log") as server:
        file_results = probe_files(files, entry_points, server, bundle, work, args.in_process)
        request_results = probe_requests(server, args)
        server_alive = server.alive()
    unexpected = []
    for name, row in file_results.items():
        wanted = expected_status(name)
        for entry, outcome in row.items():
            if outcome.status == "failed" or (wanted and outcome.status not in (wanted, "n/a")):
                unexpected.append(f"{name} / {entry}: {outcome.cell()}")
    for name, row in request_results.items():
        unexpected += [f"{name} / {entry}: {outcome.cell()}" for entry, outcome in row.items()
                       if outcome.status != "refused"]
    print(markdown("Edge-case files x entry points", file_results, entry_points))
    print()
    print(markdown("Malformed requests x server front ends", request_results, ["server_grpc", "server_rest"]))
    print()
    return {
        "benchmark": "bad_inputs",
        "files": {name: {entry: outcome.status for entry, outcome in row.items()}
                  for name, row in file_results.items()},
        "requests": {name: {entry: outcome.status for entry, outcome in row.items()}
                     for name, row in request_results.items()},
        "unexpected": unexpected,
        "all_defined": not unexpected and server_alive,
        "server_alive_after": server_alive,
        "seconds": round(time.monotonic() - started, 1),
        "in_process_clis": args.in_process,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with work_dir(args.work, "impasto-bench-bad-inputs-") as work:
        figures = run(args, work)
    common.print_json(figures)
    return 0 if figures["all_defined"] else 1


if __name__ == "__main__":
    sys.exit(main())
