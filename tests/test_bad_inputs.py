"""Every edge-case file through every entry point, and malformed requests through both server front ends.

The probes are bench/bad_inputs.py's (bench/bad_input_probes.py), run here against the
session's `impasto serve` (tiny_server) with the stylize and client CLIs called in this
process. Each outcome must be the defined one: converted at the input's size, or refused
(exit 2 and no output file, INVALID_ARGUMENT, HTTP 400, skipped by training).
"""

import re
import sys
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import bad_input_probes as probes  # noqa: E402

CONVERTED = ["edge_16bit.png", "edge_1x1.png", "edge_animated.gif", "edge_cmyk.jpg", "edge_grayscale.png",
             "edge_progressive.jpg", "edge_rgba.png"]
REFUSED = {  # What every refusal must say.
    "edge_bomb_30000.png": "30000x30000 = 900000000 pixels exceeds the limit",
    "edge_empty.jpg": "empty input",
    "edge_random_bytes.jpg": "not a recognised image",
    "edge_truncated.jpg": "truncated|Invalid JPEG data",
}


@pytest.fixture(scope="module")
def predict(tiny_server):
    with grpc.insecure_channel(tiny_server.target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict


def _outcomes(path: Path, server, predict, bundle: Path, out: Path) -> dict:
    data = path.read_bytes()
    return {
        "stylize_cli": probes.stylize_cli(path, bundle, out / "stylize", in_process=True),
        "train_pipeline": probes.train_pipeline(path),
        "server_grpc": probes.server_grpc(predict, "tiny", data),
        "server_rest": probes.server_rest(server.rest_url, "tiny", data),
        "client_cli": probes.client_cli(path, server.target, "tiny", out / "client", in_process=True),
    }


def test_the_probes_cover_every_edge_file(data_dir):
    assert sorted(CONVERTED + list(REFUSED)) == sorted(p.name for p in data_dir.glob("edge_*"))
    assert (sorted(CONVERTED), sorted(REFUSED)) == (sorted(probes.CONVERTED), sorted(probes.REFUSED))


@pytest.mark.parametrize("name", CONVERTED)
def test_convertible_files_are_stylized_at_their_size_everywhere(name, tiny_server, predict, export_bundle, tmp_path,
                                                                 data_dir):
    outcomes = _outcomes(data_dir / name, tiny_server, predict, export_bundle, tmp_path)
    assert {entry: outcome.status for entry, outcome in outcomes.items()} == dict.fromkeys(outcomes, "converted"), \
        outcomes


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_files_are_refused_with_their_reason_everywhere(name, tiny_server, predict, export_bundle, tmp_path,
                                                            data_dir):
    outcomes = _outcomes(data_dir / name, tiny_server, predict, export_bundle, tmp_path)
    assert {entry: outcome.status for entry, outcome in outcomes.items()} == dict.fromkeys(outcomes, "refused"), \
        outcomes
    for entry, outcome in outcomes.items():
        assert re.search(REFUSED[name], outcome.detail), (entry, outcome)
    assert outcomes["stylize_cli"].detail.startswith("exit 2") and outcomes["client_cli"].detail.startswith("exit 2")
    assert outcomes["server_grpc"].detail.startswith("INVALID_ARGUMENT")
    assert outcomes["server_rest"].detail.startswith("HTTP 400")


def test_the_bomb_costs_the_server_no_memory(tiny_server, predict, data_dir):
    def peak_rss_kib() -> int:
        status = Path(f"/proc/{tiny_server.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))

    before = peak_rss_kib()
    bomb = (data_dir / "edge_bomb_30000.png").read_bytes()
    for _ in range(3):
        assert probes.server_grpc(predict, "tiny", bomb).status == "refused"
    assert peak_rss_kib() - before < 100 * 1024  # Decoded, the bomb would be 2.7 GB of uint8, 10.8 GB of float32.


def test_malformed_requests_are_refused_the_same_way_by_grpc_and_rest(tiny_server, predict, small_images):
    cases = probes.request_cases(small_images["koala.png"], max_batch_size=64)
    for case in cases:
        by_grpc = probes.grpc_case(predict, "tiny", case)
        by_rest = probes.rest_case(tiny_server.rest_url, "tiny", case)
        assert (by_grpc.status, by_rest.status) == ("refused", "refused"), (case.name, by_grpc, by_rest)
        if case.grpc_code == grpc.StatusCode.INVALID_ARGUMENT and case.name != "model name ../x":
            names_input = "image_bytes" in by_grpc.detail or "pixels" in by_grpc.detail
            assert names_input, (case.name, by_grpc.detail)
    assert probes.server_grpc(predict, "tiny", small_images["koala.png"]).status == "converted"  # Still serving.


def test_the_stylize_pixel_limit_is_a_flag(export_bundle, data_dir, tmp_path, capsys):
    from impasto.model import cli

    out = tmp_path / "out.png"
    code = cli.run(["--method", "fast", "--model", str(export_bundle), str(data_dir / "chelsea.png"), "--out", str(out),
                    "--max-pixels", "100"])
    assert code == 2 and "exceeds the limit of 100 pixels" in capsys.readouterr().err and not out.exists()
