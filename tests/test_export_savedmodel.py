"""The exported SavedModel on disk: reload equivalence, signature protos, XLA marking, warmup, metadata."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from impasto.export import keys
from impasto.export.options import DEFAULT_WARMUP_SIZES
from impasto.export.signatures import ServingConfig, StylizeModule
from impasto.export.warmup import read_warmup_requests, replay, warmup_path
from impasto.model import image_io
from impasto.testing import compare_with_reload

from conftest import DATA_DIR, XLA_WARMUP_SIZES

SIGNATURES = {keys.SERVING_DEFAULT, keys.SERVING_NOXLA, keys.STYLIZE_TENSOR, keys.STYLIZE_CONTROLS}
_INPUTS = {
    keys.SERVING_DEFAULT: {keys.IMAGE_BYTES: (tf.string, [-1])},
    keys.SERVING_NOXLA: {keys.IMAGE_BYTES: (tf.string, [-1])},
    keys.STYLIZE_TENSOR: {keys.IMAGES: (tf.float32, [-1, -1, -1, 3])},
    keys.STYLIZE_CONTROLS: {keys.IMAGE_BYTES: (tf.string, [-1]), keys.STRENGTH: (tf.float32, [-1]),
                            keys.PRESERVE_COLOR: (tf.bool, [-1])},
}
_OUTPUTS = {keys.STYLIZE_TENSOR: {keys.STYLIZED_IMAGES: (tf.float32, [-1, -1, -1, 3])}}
_XLA_OPS = {"XlaLaunch", "_XlaCompile", "_XlaRun", "XlaCallModule", "_XlaMerge"}
_DECODE_AND_ENCODE_OPS = {"DecodeImage", "DecodePng", "DecodeJpeg", "EncodePng", "ResizeBilinear",
                          "ScaleAndTranslate", "MapDefun", "While", "StatelessWhile"}


def _images() -> list[bytes]:
    """Three sizes across both buckets, one larger than max_side (tiled), a GIF and a JPEG."""
    large = image_io.resize_image(image_io.load_image(DATA_DIR / "koala.png"), 200, 150)
    return [(DATA_DIR / "chelsea.png").read_bytes(), (DATA_DIR / "edge_1x1.png").read_bytes(),
            image_io.encode_image(large), (DATA_DIR / "edge_animated.gif").read_bytes(),
            (DATA_DIR / "edge_cmyk.jpg").read_bytes()]


@pytest.fixture(scope="module")
def loaded(exported):
    """The XLA export, loaded once (each load compiles its XLA programs afresh)."""
    return tf.saved_model.load(str(exported["xla"]))


def _meta_graph(version_dir):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    assert len(saved_model.meta_graphs) == 1 and "serve" in saved_model.meta_graphs[0].meta_info_def.tags
    return saved_model.meta_graphs[0]


def _dtype_and_shape(tensor_info) -> tuple:
    """(dtype, [sizes]) of a SignatureDef input or output."""
    return tf.as_dtype(tensor_info.dtype), [dim.size for dim in tensor_info.tensor_shape.dim]


def _must_compile_functions(meta_graph) -> list:
    return [f for f in meta_graph.graph_def.library.function
            if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b]


def _reachable_functions(meta_graph, signature: str) -> dict:
    """{name: FunctionDef} of every function the signature's outputs call, directly or through other functions."""
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    outputs = meta_graph.signature_def[signature].outputs.values()
    pending = [nodes[tensor.name.split(":")[0]] for tensor in outputs]
    reached = {}
    while pending:
        node = pending.pop()
        for value in node.attr.values():
            for called in [value.func.name, *(f.name for f in value.list.func)]:
                if called in library and called not in reached:
                    reached[called] = library[called]
                    pending.extend(library[called].node_def)
    return reached


def _xla_marks(functions) -> list[str]:
    """Functions marked must-compile and nodes that launch or are marked for XLA."""
    marks = [f.signature.name for f in functions if f.attr["_XlaMustCompile"].b]
    for function in functions:
        marks += [f"{function.signature.name}/{node.name}" for node in function.node_def
                  if node.op in _XLA_OPS or node.attr["_XlaMustCompile"].b or node.attr["_XlaCompile"].b]
    return marks


def test_version_directory_layout(exported):
    for version_dir in (exported["xla"], exported["noxla"]):
        assert version_dir.name == "1"
        assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables" / "variables.index").is_file()
        assert warmup_path(version_dir).is_file()
        assert [p.name for p in version_dir.parent.iterdir()] == ["1"]  # No temporary directory left behind.


def test_reload_matches_the_in_memory_module(exported, export_module):
    differences = compare_with_reload(export_module, exported["xla"], _images())
    assert set(differences) == SIGNATURES
    # Same graph, same XLA programs: the PNGs agree to the level, the floats to rounding noise.
    assert max(differences[name] for name in SIGNATURES - {keys.STYLIZE_TENSOR}) <= 1
    assert differences[keys.STYLIZE_TENSOR] <= 1e-3


def test_no_xla_export_matches_its_module(exported, export_network, export_config):
    module = StylizeModule(export_network, replace(export_config, target="cpu"))
    differences = compare_with_reload(module, exported["noxla"], _images()[:2])
    assert max(differences.values()) <= 1


def test_reloaded_batch_keeps_every_size(loaded):
    images = _images()
    outputs = loaded.signatures[keys.SERVING_DEFAULT](**{keys.IMAGE_BYTES: tf.constant(images)})
    sizes = [tf.io.decode_png(o).shape for o in outputs[keys.STYLIZED_IMAGE_BYTES].numpy()]
    assert sizes == [image_io.decode_image_bytes(i).shape for i in images]
    with pytest.raises(tf.errors.InvalidArgumentError):
        loaded.signatures[keys.SERVING_DEFAULT](**{keys.IMAGE_BYTES: tf.constant([b"garbage"])})


@pytest.mark.parametrize("which", ["xla", "noxla"])
def test_signature_defs_declare_keys_dtypes_and_shapes(exported, which):
    meta_graph = _meta_graph(exported[which])
    signatures = {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    assert set(signatures) == SIGNATURES
    for name, signature in signatures.items():
        assert signature.method_name == keys.PREDICT_METHOD_NAME
        declared = {key: _dtype_and_shape(t) for key, t in signature.inputs.items()}
        assert declared == _INPUTS[name]
        outputs = {key: _dtype_and_shape(t) for key, t in signature.outputs.items()}
        assert outputs == _OUTPUTS.get(name, {keys.STYLIZED_IMAGE_BYTES: (tf.string, [-1])})


def test_only_the_network_is_marked_for_xla(exported):
    compiled = _must_compile_functions(_meta_graph(exported["xla"]))
    assert compiled, "the XLA export has no function with _XlaMustCompile=true"
    for function in compiled:
        ops = {node.op for node in function.node_def}
        assert "Conv2D" in ops and not ops & _DECODE_AND_ENCODE_OPS, sorted(ops)
    assert _must_compile_functions(_meta_graph(exported["noxla"])) == []


def test_default_cpu_export_has_no_xla_in_any_signature(exported):
    """A stock CPU tensorflow_model_server (no XLA flags) fails every must-compile function: there must be none."""
    assert ServingConfig().target == "cpu"
    meta_graph = _meta_graph(exported["noxla"])
    assert _xla_marks(meta_graph.graph_def.library.function) == []
    assert not any(node.op in _XLA_OPS or node.attr["_XlaMustCompile"].b for node in meta_graph.graph_def.node)
    for signature in SIGNATURES:
        reached = _reachable_functions(meta_graph, signature)
        assert any("Conv2D" in {n.op for n in f.node_def} for f in reached.values()), signature  # Walk reached the net.


def test_gpu_target_compiles_the_network_in_serving_default_not_in_serving_noxla(exported):
    meta_graph = _meta_graph(exported["xla"])
    for name in (keys.SERVING_DEFAULT, keys.STYLIZE_TENSOR, keys.STYLIZE_CONTROLS):
        assert _xla_marks(_reachable_functions(meta_graph, name).values()), name
    assert _xla_marks(_reachable_functions(meta_graph, keys.SERVING_NOXLA).values()) == []


def test_the_tiled_path_is_a_function_that_is_never_inlined(exported):
    """Inlined, its copies of the network doubled the graph every signature's first call optimizes."""
    meta_graph = _meta_graph(exported["noxla"])
    reached = _reachable_functions(meta_graph, keys.SERVING_DEFAULT)
    kept_apart = [f for f in reached.values() if f.attr["_noinline"].b]
    assert len(kept_apart) == 1 and "While" in {node.op for node in kept_apart[0].node_def}


@pytest.mark.subprocess
def test_saved_model_cli_shows_the_export(exported):
    finished = subprocess.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
                               "--dir", str(exported["xla"])], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert all(f"signature_def['{name}']" in finished.stdout for name in SIGNATURES)


def test_gpu_target_warmup_holds_the_chosen_sizes_and_replays(exported, loaded):
    requests = read_warmup_requests(warmup_path(exported["xla"]))
    sizes = []
    for request in requests:
        assert request.model_spec.name == "tiny" and request.model_spec.signature_name == keys.SERVING_DEFAULT
        (png,) = tf.make_ndarray(request.inputs[keys.IMAGE_BYTES])
        sizes.append(tuple(tf.io.decode_png(png).shape[:2]))
    assert sizes == list(XLA_WARMUP_SIZES)
    results = replay(loaded, requests)  # Through serving_default, whose network is must-compile here.
    replayed = [tuple(tf.io.decode_png(r[keys.STYLIZED_IMAGE_BYTES][0]).shape[:2]) for r in results]
    assert replayed == sizes


def test_default_warmup_is_a_few_sizes_not_every_bucket(exported):
    requests = read_warmup_requests(warmup_path(exported["noxla"]))
    sizes = [tuple(tf.io.decode_png(tf.make_ndarray(r.inputs[keys.IMAGE_BYTES])[0]).shape[:2]) for r in requests]
    assert sizes == list(DEFAULT_WARMUP_SIZES)
    assert len(sizes) <= 3 < len(ServingConfig().buckets) and max(max(size) for size in sizes) <= 512


def test_metadata_lists_the_buckets(exported, loaded):
    xla = json.loads((exported["xla"] / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert xla["bucket_sides"] == [64, 128] and len(xla["buckets"]) == 4 and xla["xla"] is True
    assert xla["target"] == "gpu" and xla["warmup_buckets"] == [[64, 64], [128, 128]]
    assert xla["max_side"] == 128 and xla["style"] == "test" and xla["version"] == 1
    assert xla["width"] == 0.125 and xla["residual_blocks"] == 5
    noxla = json.loads((exported["noxla"] / keys.ASSETS_EXTRA / keys.METADATA_FILE).read_text())
    assert noxla["xla"] is False and noxla["model_name"] == "tiny_noxla"
    np.testing.assert_array_equal(loaded.size_buckets().numpy(), [64, 128])
