"""Property-based checks of the server's request parsers: arbitrary TensorProtos, JSON bodies and image bytes
give decoded inputs that fit the signature, or `InvalidInputError`; never another exception, never a hang."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tensorflow.core.framework import tensor_pb2, types_pb2

from impasto.export import keys
from impasto.model.errors import InvalidInputError
from impasto.serving import tensors
from impasto.serving.rest_server import decode_json_inputs, parse_predict_body

from conftest import DATA_DIR

SIGNATURES = {
    keys.SERVING_DEFAULT: {keys.IMAGE_BYTES: tf.TensorSpec([None], tf.string)},
    keys.STYLIZE_TENSOR: {keys.IMAGES: tf.TensorSpec([None, None, None, 3], tf.float32)},
    keys.STYLIZE_CONTROLS: {keys.IMAGE_BYTES: tf.TensorSpec([None], tf.string),
                            keys.STRENGTH: tf.TensorSpec([None], tf.float32),
                            keys.PRESERVE_COLOR: tf.TensorSpec([None], tf.bool)},
}
MAX_BYTES = 1 << 20
MAX_BATCH = 64
KEYS = st.sampled_from([keys.IMAGE_BYTES, keys.IMAGES, keys.STRENGTH, keys.PRESERVE_COLOR]) | st.text(max_size=8)
DTYPES = (st.sampled_from([types_pb2.DT_STRING, types_pb2.DT_FLOAT, types_pb2.DT_BOOL, types_pb2.DT_HALF,
                           types_pb2.DT_INT64, types_pb2.DT_COMPLEX64, types_pb2.DT_RESOURCE, types_pb2.DT_VARIANT,
                           types_pb2.DT_INVALID]) | st.integers(-3, 300))


@st.composite
def tensor_protos(draw) -> tensor_pb2.TensorProto:
    """A TensorProto with any dtype, any dimensions (negative and huge ones too) and any mix of contents."""
    proto = tensor_pb2.TensorProto(dtype=draw(DTYPES))
    proto.tensor_shape.unknown_rank = draw(st.booleans()) and draw(st.booleans())
    for size in draw(st.lists(st.integers(-2, 10**12) | st.integers(0, 4), max_size=5)):
        proto.tensor_shape.dim.add(size=size)
    content = draw(st.sampled_from(["none", "tensor_content", "float_val", "string_val", "bool_val", "half_val"]))
    if content == "tensor_content":
        proto.tensor_content = draw(st.binary(max_size=64))
    elif content == "float_val":
        proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
    elif content == "string_val":
        proto.string_val.extend(draw(st.lists(st.binary(max_size=16), max_size=8)))
    elif content == "bool_val":
        proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=8)))
    elif content == "half_val":
        proto.half_val.extend(draw(st.lists(st.integers(0, 65535), max_size=8)))
    return proto


def _check_decoded(specs, arrays) -> None:
    """Decoded inputs must be bounded, and every batch that passes `check_inputs` must fit the signature."""
    assert all(array.nbytes <= MAX_BYTES or array.dtype == object for array in arrays.values())
    batch = tensors.check_inputs(specs, arrays, MAX_BATCH)
    assert 1 <= batch <= MAX_BATCH
    for key, spec in specs.items():
        assert arrays[key].shape[0] == batch and spec.shape.is_compatible_with(arrays[key].shape)
        assert arrays[key].dtype == (object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)


@pytest.mark.slow
@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SIGNATURES)), st.dictionaries(KEYS, tensor_protos(), max_size=4))
def test_any_tensor_protos_decode_to_fitting_inputs_or_invalid_input(signature, protos):
    specs = SIGNATURES[signature]
    try:
        _check_decoded(specs, tensors.decode_protos(specs, protos, MAX_BYTES))
    except InvalidInputError as error:
        assert str(error)


@settings(max_examples=150, deadline=2000)
@given(st.sampled_from(sorted(SIGNATURES)), st.integers(1, 8), st.integers(0, 10**15), st.binary(max_size=8))
def test_a_shape_that_claims_more_than_the_limit_is_refused_before_allocating(signature, rank, size, value):
    specs = SIGNATURES[signature]
    key = sorted(specs)[0]
    proto = tensor_pb2.TensorProto(dtype=specs[key].dtype.as_datatype_enum, string_val=[value], float_val=[1.0],
                                   bool_val=[True])
    for _ in range(rank):
        proto.tensor_shape.dim.add(size=size)
    claimed = size**rank * max(specs[key].dtype.size, 8 if specs[key].dtype == tf.string else 1)
    try:
        array = tensors.from_tensor_proto(key, proto, MAX_BYTES)
    except InvalidInputError as error:
        assert claimed > MAX_BYTES or "cannot decode" in str(error)
        return
    assert claimed <= MAX_BYTES and array.size == size**rank


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.builds(lambda data: {"b64": data}, st.text(max_size=12)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=3),
    max_leaves=20)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SIGNATURES)), st.sampled_from(["instances", "inputs", "both", "other"]), JSON_VALUES)
def test_any_json_request_decodes_to_fitting_inputs_or_invalid_input(signature, layout, value):
    body = {"both": {"instances": value, "inputs": value}, "other": {"examples": value}}.get(layout, {layout: value})
    _parse_and_check(SIGNATURES[signature], json.dumps(body).encode())


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SIGNATURES)), st.binary(max_size=200)
       | st.builds(lambda depth: b'{"instances": ' + b"[" * depth + b"]" * depth + b"}", st.integers(1, 200_000)))
def test_any_request_body_bytes_decode_or_are_invalid_input(signature, body):
    _parse_and_check(SIGNATURES[signature], body)


def _parse_and_check(specs, body: bytes) -> None:
    try:
        values, row_format, _ = parse_predict_body(body)
        _check_decoded(specs, decode_json_inputs(values, specs, row_format))
    except InvalidInputError as error:
        assert str(error)


# The image bytes that pass the parsers, through a real loaded version: the SavedModel's decoder too.


def _encoded(format_name: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.open(DATA_DIR / "koala.png").convert("RGB").resize((24, 32))
    image.save(buffer, format=format_name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def servable(serving_version_dir):
    from impasto.serving.servable import Servable

    return Servable("tiny", 1, serving_version_dir)


@pytest.fixture(scope="module")
def encoded_images():
    return [_encoded(name) for name in ("PNG", "JPEG", "GIF", "BMP")]


@pytest.mark.slow
@settings(max_examples=200, deadline=5000, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_corrupted_images_through_the_model_give_png_or_invalid_input(servable, encoded_images, which, position,
                                                                       value, truncate):
    from impasto.serving.limits import Limits
    from impasto.serving.predictor import Predictor

    data = bytearray(encoded_images[which])
    position %= len(data)
    if truncate:
        del data[position:]
    else:
        data[position] = value
    inputs = {keys.IMAGE_BYTES: np.array([bytes(data)], dtype=object)}
    try:
        Predictor(None, None, Limits())._check_images(inputs)
        output = servable.predict(keys.SERVING_DEFAULT, inputs)[keys.STYLIZED_IMAGE_BYTES]
    except InvalidInputError as error:
        assert str(error)
        return
    assert output.shape == (1,) and output[0].startswith(b"\x89PNG")
