"""LiteRT export: every variant converts to builtin ops, runs in the real `ai-edge-litert` interpreter and
matches the TensorFlow network; `impasto export --format tflite` and `impasto stylize --model X.tflite`
end to end."""

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from impasto.export import cli as export_cli
from impasto.export import litert
from impasto.export.litert_variants import VARIANTS
from impasto.model.feedforward.bundles import load_network
from impasto.model.feedforward.litert_network import equalize_norm_inputs, litert_network, norm_input_statistics
from impasto.model.feedforward.litert_runtime import LiteRTStylizer
from impasto.model.feedforward.noise_input import add_noise_input
from impasto.model.feedforward.reference_transformer import ReferenceTransformer
from impasto.model.feedforward.transformer import TransformerNet
from impasto.model.files import atomic_write_bytes

from conftest import REPO_ROOT, load_test_image

pytestmark = pytest.mark.slow  # each module fixture converts networks to LiteRT (10 to 20 s)

IMPASTO = str(REPO_ROOT / ".venv" / "bin" / "impasto")
CALIBRATION_PHOTOS = REPO_ROOT / "data" / "samples" / "photos"

# Every operator the export may use: all builtins. A Select TF (Flex) op would show as CUSTOM:Flex...
BUILTIN_OPERATORS = {"ADD", "CONCATENATION", "CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "FLOOR_DIV", "LOGISTIC",
                     "MAXIMUM", "MEAN", "MUL", "PACK", "QUANTIZE", "RSQRT", "SHAPE", "SQUARED_DIFFERENCE",
                     "SQUARE", "STRIDED_SLICE", "SUB", "TILE",
                     "BROADCAST_TO", "FLOOR_MOD", "GATHER", "RANGE"}  # the last four: the noise plane


def _real_photos() -> list[np.ndarray]:
    """Two real photos, float32 [H, W, 3]: one square, one non-square whose sides are not multiples of 4."""
    return [load_test_image("chelsea.png")[:128, :128], load_test_image("coffee.png")[:122, :197]]


@pytest.fixture(scope="module")
def tiny_network() -> TransformerNet:
    """Six residual blocks, not the paper's five, and a noise channel beside the photo: conversion, tiling stages
    and runtime take any depth and the fixed noise (`impasto.model.feedforward.noise_input`)."""
    network = TransformerNet(width=0.125, residual_blocks=6, seed=0, noise_channels=1)
    weights = network.weights_dict()
    weights["encoder/0/kernel"][:, :, 3:] *= 10.0  # so that the noise shows in the picture
    network.load_weights_dict(weights)
    return network


@pytest.fixture(scope="module")
def tiny_export(tiny_network, tmp_path_factory):
    """The tiny network exported in every variant (calibrated on the sample photos): (directory, results).

    An int8-full file from an earlier export is there first: the export must replace or remove it."""
    out = tmp_path_factory.mktemp("litert")
    (out / "tiny-int8-full.tflite").write_bytes(b"an earlier export")
    calibration = litert.load_calibration_photos(CALIBRATION_PHOTOS, long_side=96)
    results = litert.export_litert(tiny_network, {"style": "tiny", "width": 0.125}, out, "tiny", list(VARIANTS),
                                   calibration, source="test", report=lambda line: None)
    return out, results


@pytest.fixture(scope="module")
def tiny_models(tiny_network) -> dict[str, bytes]:
    """Every variant of the tiny network converted, whether or not an export would ship it."""
    calibration = litert.load_calibration_photos(CALIBRATION_PHOTOS, long_side=96)
    return {variant: litert.convert(tiny_network, variant, calibration) for variant in VARIANTS}


@pytest.fixture(scope="module")
def tiny_comparisons(tiny_network, tiny_models, tmp_path_factory):
    """Each variant of `tiny_models` in LiteRT against the network on `_real_photos`."""
    out = tmp_path_factory.mktemp("compare")
    photos = _real_photos()
    expected = [tiny_network(photo[None])[0].numpy() for photo in photos]
    comparisons = {}
    for variant, model in tiny_models.items():
        atomic_write_bytes(out / f"{variant}.tflite", model)
        comparisons[variant] = litert.compare_with_network(out / f"{variant}.tflite", photos, expected)
    return comparisons


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_uses_builtin_ops_only(tiny_models, variant):
    operators = litert.operator_names(tiny_models[variant])
    assert operators <= BUILTIN_OPERATORS, operators - BUILTIN_OPERATORS
    assert {"CONV_2D", "DEPTH_TO_SPACE", "MEAN", "RSQRT"} <= operators
    assert ("QUANTIZE" in operators) == (variant == "int8-full")


def test_operator_names_sees_select_tf_ops():
    import tensorflow as tf

    function = tf.function(tf.linalg.det, input_signature=[tf.TensorSpec([3, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    assert litert.operator_names(converter.convert()) == {"CUSTOM:FlexMatrixDeterminant"}


def test_float32_matches_tensorflow_within_half_a_level(tiny_comparisons):
    assert tiny_comparisons["float32"]["mean_abs_error"] <= 0.5


def test_float16_reaches_45_db(tiny_comparisons):
    assert tiny_comparisons["float16"]["psnr_db"] >= 45.0


def test_dynamic_range_int8_reaches_35_db(tiny_comparisons):
    assert tiny_comparisons["int8"]["psnr_db"] >= 35.0


def test_full_integer_int8_is_reported_and_shipped_only_at_30_db(tiny_export, tiny_comparisons):
    out, results = tiny_export
    report = results["int8-full"]
    print(f"int8-full, tiny network: {tiny_comparisons['int8-full']} on the test photos, "
          f"{report['check']} on the calibration photos")
    assert (out / "tiny-int8-full.tflite").exists() == report["written"] == (report["check"]["psnr_db"] >= 30.0)
    if report["written"]:
        assert (out / "tiny-int8-full.tflite").read_bytes() != b"an earlier export"
    else:
        assert "PSNR >= 30 dB" in report["reason"]
        assert not (out / "tiny-int8-full.json").exists()


def test_side_files_state_the_contract_and_source(tiny_export, tiny_network):
    out, results = tiny_export
    for variant in ("float32", "float16", "int8"):
        side = json.loads((out / f"tiny-{variant}.json").read_text())
        assert side == results[variant]
        assert side["style"] == "tiny" and side["variant"] == variant
        assert side["input"]["shape"] == [1, -1, -1, 3] and side["input"]["range"] == [0, 255]
        assert side["input"]["dtype"] == "float32" and side["input"]["layout"] == "NHWC"
        assert side["source_weights_sha256"] == litert.weights_digest(tiny_network)
        assert side["residual_blocks"] == 6
        assert side["bytes"] == (out / f"tiny-{variant}.tflite").stat().st_size
    assert not [path for path in out.iterdir() if path.name.startswith(".")]  # No temporaries left.


def test_runtime_takes_any_size_in_turn(tiny_export, tiny_network):
    out, _ = tiny_export
    stylizer = LiteRTStylizer(out / "tiny-float32.tflite")
    for photo in _real_photos() + [_real_photos()[1][:7, :5], _real_photos()[0]]:
        result = stylizer.run(photo)
        assert result.shape == photo.shape
        assert np.abs(result - tiny_network(photo[None])[0].numpy()).mean() <= 0.5


def test_export_cli_writes_the_variants_asked_for(tmp_path, capsys):
    out = tmp_path / "out"
    assert export_cli.run(["great_wave", "--format", "tflite", "--out", str(out), "--variants", "float16,int8"]) == 0
    assert sorted(path.name for path in out.iterdir()) == [
        "great_wave-float16.json", "great_wave-float16.tflite", "great_wave-float16.tiles.tflite",
        "great_wave-int8.json", "great_wave-int8.tflite", "great_wave-int8.tiles.tflite"]
    side = json.loads((out / "great_wave-int8.json").read_text())
    bundle = json.loads((REPO_ROOT / "model" / "bundled" / "great_wave.json").read_text())
    assert side["style"] == "great_wave" and side["source"] == "great_wave" and side["width"] == bundle["width"]
    assert side["check"]["psnr_db"] >= 35.0 and side["check"]["photos"] == 8
    # The weights grow with the square of the width: the half-width size targets, scaled.
    scale = (bundle["width"] / 0.5) ** 2
    assert (out / "great_wave-float16.tflite").stat().st_size <= 1.5e6 * scale
    assert (out / "great_wave-int8.tflite").stat().st_size <= 0.8e6 * scale
    assert "wrote" in capsys.readouterr().out


def test_a_half_width_network_meets_the_phone_size_targets():
    network = TransformerNet(width=0.5, seed=0)
    assert len(litert.convert(network, "float16")) <= 1.5e6
    assert len(litert.convert(network, "int8")) <= 0.8e6


@pytest.mark.parametrize("flags,message", [
    (["--variants", "float16,int4"], "--variants 'float16,int4': unknown int4; choose from float32"),
    (["--variants", ","], "no variant named"),
    ([], "needs --out"),
    (["--calibration-photos", "/nonexistent"], "not a directory"),
])
def test_export_cli_refuses_bad_flags_with_exit_2(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    flags = flags if flags == [] else [*flags, "--out", str(out)]
    assert export_cli.run(["great_wave", "--format", "tflite", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _stylize(*args):
    return subprocess.run([IMPASTO, "stylize", "--method", "fast", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_stylize_runs_a_tflite_file_like_the_network(tmp_path, data_dir, tiny_export, tiny_network):
    out_dir, _ = tiny_export
    out = tmp_path / "out.png"
    finished = _stylize("--model", out_dir / "tiny-float32.tflite", data_dir / "coffee.png", "--out", out,
                        "--no-progress")
    assert finished.returncode == 0, finished.stderr[-2000:]
    photo = load_test_image("coffee.png")
    expected = np.clip(tiny_network(photo[None])[0].numpy(), 0, 255)
    written = np.asarray(Image.open(out), np.float32)
    assert written.shape == photo.shape
    assert np.abs(written - expected).mean() <= 1.0  # 0.5 from rounding to 8 bits.


def test_a_truncated_tflite_file_exits_2_with_a_clear_message(tmp_path, data_dir, tiny_export):
    out_dir, _ = tiny_export
    good = (out_dir / "tiny-float16.tflite").read_bytes()
    model = tmp_path / "bad.tflite"
    model.write_bytes(good[:len(good) // 2])
    out = tmp_path / "out.png"
    finished = _stylize("--model", model, data_dir / "coffee.png", "--out", out)
    assert finished.returncode == 2, finished.stderr[-2000:]
    assert f"{model}: not a valid LiteRT model" in finished.stderr
    assert "Traceback" not in finished.stderr
    assert not out.exists()


@pytest.mark.parametrize("damage", ["garbage", "empty", "missing", "other network"])
def test_other_bad_tflite_files_exit_2_with_a_clear_message(tmp_path, data_dir, capsys, damage):
    """In process: the same `impasto stylize` entry point as the subprocess above."""
    from impasto.model import cli as stylize_cli

    model = tmp_path / "bad.tflite"
    if damage == "other network":
        import tensorflow as tf

        function = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        model.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()]).convert())
    elif damage != "missing":
        model.write_bytes({"garbage": b"not a flatbuffer" * 64, "empty": b""}[damage])
    out = tmp_path / "out.png"
    assert stylize_cli.run(["--model", str(model), str(data_dir / "coffee.png"), "--out", str(out)]) == 2
    expected = {"other network": "not an impasto stylization network",
                "missing": "no such .tflite file"}.get(damage, "not a valid LiteRT model")
    assert f"{model}: {expected}" in capsys.readouterr().err
    assert not out.exists()


def test_tiled_litert_run_equals_the_whole_image_run(tiny_export, tiny_network):
    """Every tile normalized with the whole image's statistics: 4 x 5 tiles of 32 px give the untiled result."""
    from impasto.model.feedforward.litert_tiling import LiteRTStages, litert_tiled_stylize, stages_path

    out_dir, results = tiny_export
    model = out_dir / "tiny-float32.tflite"
    assert results["float32"]["tiling_stages"]["file"] == stages_path(model).name == "tiny-float32.tiles.tflite"
    photo = load_test_image("chelsea.png")[:128, :150]
    whole = LiteRTStylizer(model).run(photo)
    tiled = litert_tiled_stylize(LiteRTStages(stages_path(model)), photo, tile_size=32)
    assert tiled.shape == photo.shape
    assert np.abs(tiled - whole).max() < 0.05, np.abs(tiled - whole).max()
    assert np.abs(tiled - tiny_network(photo[None])[0].numpy()).mean() <= 0.5


def test_stylize_tiles_a_tflite_file_with_its_stages_and_refuses_without(tmp_path, data_dir, capsys, tiny_export):
    from impasto.model import cli as stylize_cli

    out_dir, _ = tiny_export
    argv = [str(data_dir / "coffee.png"), "--tile", "32", "--no-progress"]
    tiled, whole = tmp_path / "tiled.png", tmp_path / "whole.png"
    assert stylize_cli.run(["--model", str(out_dir / "tiny-float16.tflite"), *argv, "--out", str(tiled)]) == 0
    assert stylize_cli.run(["--model", str(out_dir / "tiny-float16.tflite"), *argv[:1], "--out", str(whole)]) == 0
    difference = np.abs(np.asarray(Image.open(tiled), np.float32) - np.asarray(Image.open(whole), np.float32))
    assert difference.mean() < 0.05 and difference.max() <= 1.0  # Rounding to 8 bits only.

    alone = tmp_path / "alone.tflite"  # No tiling stages beside it.
    alone.write_bytes((out_dir / "tiny-float16.tflite").read_bytes())
    out = tmp_path / "out.png"
    assert stylize_cli.run(["--model", str(alone), *argv, "--out", str(out)]) == 2
    assert f"{tmp_path / 'alone.tiles.tflite'}: no tiling-stages file" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("height, width", [(64, 96), (37, 50), (13, 22)])
def test_conversion_form_equals_the_reference_network(height, width):
    """`litert_network` (blocked first and last convs, sub-pixel upsampling, folded norms) against the plain
    `ReferenceTransformer`, on random weights (every bias, scale and offset too) and a real photo."""
    network = TransformerNet(width=0.25, seed=height)
    rng = np.random.default_rng(height)
    weights = {path: value + rng.normal(0.0, 0.3, value.shape) for path, value in network.weights_dict().items()}
    photo = load_test_image("chelsea.png")[None, 20:20 + height, 30:30 + width]
    plain = ReferenceTransformer(weights)(photo).numpy()
    converted_form = litert_network(weights)(photo).numpy()
    assert converted_form.shape == photo.shape
    assert np.abs(converted_form - plain).max() < 0.01, np.abs(converted_form - plain).max()
    assert plain.std() > 1.0


def test_xnnpack_runs_every_conv_in_one_partition(tiny_models):
    """An op XNNPACK does not take would split the network: every conv kernel (3 encoder, 2 per residual block,
    2 decoder, 1 output) is an input of one delegate node."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tiny_models["float32"], num_threads=2)
    interpreter.resize_tensor_input(0, [1, 128, 96, 3], strict=False)
    interpreter.allocate_tensors()
    operators = interpreter._get_ops_details()
    kernels = {op["inputs"][1] for op in operators if op["op_name"] == "CONV_2D"}
    assert len(kernels) == 3 + 2 * 6 + 2 + 1
    partitions = [set(op["inputs"]) for op in operators if op["op_name"] == "DELEGATE"]
    assert [kernels <= partition for partition in partitions].count(True) == 1, [len(kernels & p) for p in partitions]


def test_equalized_norm_inputs_keep_the_function_and_put_every_channel_on_one_scale():
    """`equalize_norm_inputs` (int8-full's first step) on random weights: the same output in both network
    forms, and on the photos it saw every norm input channel has mean 0 and spread 1, which it had not."""
    network = TransformerNet(width=0.25, seed=3)
    rng = np.random.default_rng(3)
    weights = {path: value + rng.normal(0.0, 0.3, value.shape) for path, value in network.weights_dict().items()}
    photos = _real_photos()
    equalized = equalize_norm_inputs(weights, photos)
    for form in (ReferenceTransformer, litert_network):
        for photo in photos:
            before, after = form(weights)(photo[None]).numpy(), form(equalized)(photo[None]).numpy()
            assert np.abs(after - before).max() < 0.01, (form, np.abs(after - before).max())
    spreads_before = np.concatenate([spread for _, spread in norm_input_statistics(weights, photos).values()])
    assert np.abs(np.log(spreads_before)).max() > 1.0  # Not on one scale to begin with.
    statistics = norm_input_statistics(equalized, photos)
    assert len(statistics) == 15  # Every normalized conv: 3 encoder, 10 residual, 2 decoder.
    for prefix, (mean, spread) in statistics.items():
        np.testing.assert_allclose(mean, 0.0, atol=1e-3, err_msg=prefix)
        np.testing.assert_allclose(spread, 1.0, rtol=1e-3, err_msg=prefix)


@pytest.mark.parametrize("variant", ["int8", "int8-full"])
def test_reading_noise_costs_the_quantized_photo_no_precision(tmp_path, variant):
    """The photo and the noise share the first conv's input, so one int8 range: read at `NOISE_SCALE`, near the
    photo's [-1, 1], a network that reads noise through zero taps converts as well as the same network without
    it. (At the texture's own scale, out to +-5, int8 lost 6 dB here: 31.1 against 37.4.)"""
    plain = TransformerNet(width=0.25, seed=0)
    reads_noise = TransformerNet(width=0.25, seed=0, noise_channels=1)
    reads_noise.load_weights_dict(add_noise_input(plain.weights_dict(), 1))
    photos = _real_photos()
    psnrs = []
    for name, network in (("plain", plain), ("reads_noise", reads_noise)):
        atomic_write_bytes(tmp_path / f"{name}.tflite", litert.convert(network, variant, photos))
        check = litert.compare_with_network(tmp_path / f"{name}.tflite", photos,
                                            [network(photo[None])[0].numpy() for photo in photos])
        psnrs.append(check["psnr_db"])
    assert psnrs[1] >= psnrs[0] - 0.5, psnrs


def test_full_integer_int8_of_a_trained_style_meets_its_bound(tmp_path):
    """the_night_cafe's int8-full file: 26.9 dB on the sample photos before its norms' inputs were equalized."""
    network, _ = load_network("the_night_cafe")
    photos = litert.load_calibration_photos(CALIBRATION_PHOTOS)
    atomic_write_bytes(tmp_path / "int8-full.tflite", litert.convert(network, "int8-full", photos))
    check = litert.compare_with_network(tmp_path / "int8-full.tflite", photos,
                                        [network(photo[None])[0].numpy() for photo in photos])
    assert VARIANTS["int8-full"].meets_bound(check), check
