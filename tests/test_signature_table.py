"""The one signature table (`impasto.export.keys.SIGNATURES`) and what reads it: docs, exporter, client."""

import re

import tensorflow as tf
from tensorflow.core.framework import types_pb2

from impasto.export import keys
from impasto.export.signatures import StylizeModule, input_signature
from impasto.serving.client import expected_tensors

from conftest import REPO_ROOT


def _docs_table() -> str:
    text = (REPO_ROOT / "docs" / "serving.md").read_text()
    section = text[text.index("## Signatures"):]
    return "\n".join(re.findall(r"^\|.*\|$", section.split("\n\n", 3)[2], re.MULTILINE))


def test_docs_serving_shows_the_code_table():
    assert _docs_table() == keys.signature_table_markdown()


def test_every_signature_is_a_module_method_with_the_table_inputs():
    for name, info in keys.SIGNATURES.items():
        specs = getattr(StylizeModule, name).input_signature
        assert [(spec.name, spec.dtype, spec.shape.as_list()) for spec in specs] == [
            (tensor.key, tf.as_dtype(tensor.dtype), tensor.static_shape) for tensor in info.inputs]
        assert specs == tuple(input_signature(name))


def test_client_expects_the_table_dtypes_and_serving_default_for_unknown_names():
    inputs, outputs = expected_tensors(keys.STYLIZE_CONTROLS)
    assert inputs == {keys.IMAGE_BYTES: types_pb2.DT_STRING, keys.STRENGTH: types_pb2.DT_FLOAT,
                      keys.PRESERVE_COLOR: types_pb2.DT_BOOL}
    assert outputs == {keys.STYLIZED_IMAGE_BYTES: types_pb2.DT_STRING}
    assert expected_tensors(keys.STYLIZE_TENSOR) == ({keys.IMAGES: types_pb2.DT_FLOAT},
                                                     {keys.STYLIZED_IMAGES: types_pb2.DT_FLOAT})
    assert expected_tensors("my_own_signature") == expected_tensors(keys.SERVING_DEFAULT)
