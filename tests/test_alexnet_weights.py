"""ImageNet AlexNet weights: the caffemodel reader, Caffe → Flax layout, the .npz loader.

The caffemodels here are synthetic, written with a minimal protobuf encoder
(varints, length-delimited fields, packed and unpacked floats) in the layouts
of caffe.proto's `NetParameter` (current `layer` and legacy `layers`).
"""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpu import models
from jaxpu.models import alexnet_weights as aw
from jaxpu.models import layers

# ----------------------------------------------------------------------------
# A minimal protobuf encoder.
# ----------------------------------------------------------------------------


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _tag(field, wire):
  return _varint(field << 3 | wire)


def _bytes_field(field, payload: bytes) -> bytes:
  return _tag(field, 2) + _varint(len(payload)) + payload


def _varint_field(field, value) -> bytes:
  return _tag(field, 0) + _varint(value)


def _blob(array, legacy=False, packed=True, double=False) -> bytes:
  """A BlobProto: `shape` (BlobShape, packed dims) or legacy num/channels/height/width."""
  array = np.asarray(array)
  if legacy:
    dims = (1,) * (4 - array.ndim) + array.shape
    out = b"".join(_varint_field(f, d) for f, d in zip((1, 2, 3, 4), dims))
  else:
    out = _bytes_field(7, _bytes_field(1, b"".join(_varint(d) for d in array.shape)))
  flat = array.ravel()
  if double:
    out += _bytes_field(8, flat.astype("<f8").tobytes())
  elif packed:
    out += _bytes_field(5, flat.astype("<f4").tobytes())
  else:
    out += b"".join(_tag(5, 5) + struct.pack("<f", v) for v in flat)
  return out


def _layer(name, blobs, type_="Convolution") -> bytes:
  """LayerParameter: name 1, type 2, bottom 3, blobs 7, loss_weight 5 (float), phase 10."""
  return (_bytes_field(1, name.encode()) + _bytes_field(2, type_.encode())
          + _bytes_field(3, b"data") + _tag(5, 5) + struct.pack("<f", 0.)
          + _varint_field(10, 0) + b"".join(_bytes_field(7, b) for b in blobs))


def _v1_layer(name, blobs) -> bytes:
  """V1LayerParameter: bottom 2, name 4, type 5 (enum), blobs 6."""
  return (_bytes_field(2, b"data") + _bytes_field(4, name.encode()) + _varint_field(5, 4)
          + b"".join(_bytes_field(6, b) for b in blobs))


def _v0_layer(name, blobs) -> bytes:
  """V1LayerParameter holding only a V0LayerParameter (`layer`, 1: name 1, blobs 50)."""
  v0 = _bytes_field(1, name.encode()) + b"".join(_bytes_field(50, b) for b in blobs)
  return _bytes_field(1, v0)


def _net(layer_messages, field=100) -> bytes:
  """NetParameter: name 1, a fixed64 field to skip, layers (`field`)."""
  return (_bytes_field(1, b"AlexNet") + _tag(99, 1) + struct.pack("<d", 1.5)
          + b"".join(_bytes_field(field, m) for m in layer_messages))


def _write(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


# Two layers: a grouped 3×3 convolution (2 groups) and an InnerProduct over its 4×2×2 output.
RS = np.random.RandomState(0)
CONV_OIHW = RS.standard_normal((4, 2, 3, 3)).astype(np.float32)  # in 4 channels, 2 groups
CONV_BIAS = RS.standard_normal(4).astype(np.float32)
FC_WEIGHTS = RS.standard_normal((5, 4 * 2 * 2)).astype(np.float32)  # (out, C·H·W)
FC_BIAS = RS.standard_normal(5).astype(np.float32)
SHAPES = {"conv2": (3, 3, 2, 4), "fc6": (2, 2, 4, 5)}


def test_read_current_format(tmp_path):
  data = _net([_layer("conv2", [_blob(CONV_OIHW), _blob(CONV_BIAS)]),
               _layer("relu2", [], "ReLU"),
               _layer("fc6", [_blob(FC_WEIGHTS), _blob(FC_BIAS, packed=False)], "InnerProduct")])
  layers_ = aw.read_caffemodel(_write(tmp_path / "net.caffemodel", data))
  assert list(layers_) == ["conv2", "fc6"]  # layers without blobs are left out
  np.testing.assert_array_equal(layers_["conv2"][0], CONV_OIHW)
  np.testing.assert_array_equal(layers_["conv2"][1], CONV_BIAS)
  np.testing.assert_array_equal(layers_["fc6"][0], FC_WEIGHTS)
  np.testing.assert_array_equal(layers_["fc6"][1], FC_BIAS)


def test_read_legacy_formats(tmp_path):
  """V1 `layers` with 4-D legacy blob dims, unpacked and double data; a nested V0 layer."""
  data = _net([_v1_layer("conv2", [_blob(CONV_OIHW, legacy=True),
                                   _blob(CONV_BIAS, legacy=True, packed=False)]),
               _v0_layer("fc6", [_blob(FC_WEIGHTS, legacy=True, double=True),
                                 _blob(FC_BIAS, legacy=True)])], field=2)
  layers_ = aw.read_caffemodel(_write(tmp_path / "old.caffemodel", data))
  np.testing.assert_array_equal(layers_["conv2"][0], CONV_OIHW)
  assert layers_["conv2"][1].shape == (1, 1, 1, 4)  # legacy num, channels, height, width
  assert layers_["fc6"][0].shape == (1, 1, 5, 16) and layers_["fc6"][0].dtype == np.float32
  np.testing.assert_array_equal(layers_["fc6"][0][0, 0], FC_WEIGHTS)
  arrays = aw.caffe_to_arrays(layers_, SHAPES)
  np.testing.assert_array_equal(arrays["conv2/bias"], CONV_BIAS)
  np.testing.assert_array_equal(arrays["fc6/kernel"],
                                FC_WEIGHTS.reshape(5, 4, 2, 2).transpose(2, 3, 1, 0))


def test_converted_layers_compute_caffes_outputs(tmp_path):
  """HWIO kernels in Flax's NHWC convolution = Caffe's grouped OIHW conv and InnerProduct."""
  data = _net([_layer("conv2", [_blob(CONV_OIHW), _blob(CONV_BIAS)]),
               _layer("fc6", [_blob(FC_WEIGHTS), _blob(FC_BIAS)], "InnerProduct")])
  npz = tmp_path / "w.npz"
  arrays = aw.caffemodel_to_npz(_write(tmp_path / "net.caffemodel", data), str(npz), SHAPES)
  loaded = aw.load_npz(str(npz), SHAPES)
  assert sorted(arrays) == ["conv2/bias", "conv2/kernel", "fc6/bias", "fc6/kernel"]
  np.testing.assert_array_equal(loaded["conv2"]["kernel"], arrays["conv2/kernel"])

  x_nchw = RS.standard_normal((1, 4, 4, 4)).astype(np.float32)  # 4 channels, 4×4
  # Caffe: cross-correlation, group 2 (output block g sees input block g), NCHW/OIHW.
  caffe_conv = np.asarray(jax.lax.conv_general_dilated(
      x_nchw, CONV_OIHW, (1, 1), "VALID", feature_group_count=2,
      dimension_numbers=("NCHW", "OIHW", "NCHW"))) + CONV_BIAS[None, :, None, None]
  for c in range(4):  # by hand at (0, 0): output c sees input block c // 2
    g = c // 2
    by_hand = np.sum(x_nchw[0, 2 * g:2 * g + 2, :3, :3] * CONV_OIHW[c]) + CONV_BIAS[c]
    assert np.isclose(caffe_conv[0, c, 0, 0], by_hand, atol=1e-4)
  flax_conv = layers.conv_general_dilated(
      jnp.asarray(x_nchw.transpose(0, 2, 3, 1)), jnp.asarray(loaded["conv2"]["kernel"]),
      (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=2) + loaded["conv2"]["bias"]
  np.testing.assert_allclose(np.asarray(flax_conv).transpose(0, 3, 1, 2), caffe_conv,
                             rtol=1e-5, atol=1e-5)

  # InnerProduct over the C·H·W-flattened 4×2×2 map = a 2×2 valid convolution.
  feature = caffe_conv[:, :, :2, :2]  # (1, 4, 2, 2)
  caffe_fc = FC_WEIGHTS @ feature.reshape(-1) + FC_BIAS
  flax_fc = jax.lax.conv_general_dilated(
      jnp.asarray(feature.transpose(0, 2, 3, 1)), jnp.asarray(loaded["fc6"]["kernel"]),
      (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + loaded["fc6"]["bias"]
  np.testing.assert_allclose(np.asarray(flax_fc)[0, 0, 0], caffe_fc, rtol=1e-5, atol=1e-5)


def test_conversion_errors_name_layer_and_shapes(tmp_path):
  data = _net([_layer("conv2", [_blob(CONV_OIHW.transpose(1, 0, 2, 3)), _blob(CONV_BIAS)]),
               _layer("fc6", [_blob(FC_WEIGHTS), _blob(FC_BIAS)])])
  path = _write(tmp_path / "net.caffemodel", data)
  with pytest.raises(ValueError, match=r"'conv2'.*\(4, 2, 3, 3\).*found \(2, 4, 3, 3\)"):
    aw.caffemodel_to_npz(path, str(tmp_path / "w.npz"), SHAPES)
  with pytest.raises(ValueError, match=r"no layer\(s\) \['conv1'\].*\['conv2', 'fc6'\]"):
    aw.caffemodel_to_npz(path, str(tmp_path / "w.npz"), {"conv1": (3, 3, 2, 4)})
  with pytest.raises(ValueError, match="Truncated"):
    aw.read_caffemodel(_write(tmp_path / "cut.caffemodel", data[:-7]))


def _fcn_alexnet_encoder_shapes(width):
  model = models.get("fcn_alexnet", 3, width=width)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3))))
  return params["params"]


def test_default_layout_is_fcn_alexnets_encoder():
  encoder = _fcn_alexnet_encoder_shapes(1.0)["encoder"]
  expected = {f"{layer}/{leaf}": tuple(encoder[layer][leaf].shape)
              for layer in encoder for leaf in encoder[layer]}
  assert aw.npz_shapes() == expected
  assert sorted(aw.LAYERS) == sorted(encoder)


def re_tuple(shape):
  return r"\(" + r", ".join(str(d) for d in shape) + r"\)"


def test_encoder_from_npz_replaces_the_encoder(tmp_path):
  shapes = _fcn_alexnet_encoder_shapes(1 / 16)
  rs = np.random.RandomState(1)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  arrays = {f"{layer}/{leaf}": rs.standard_normal(s.shape).astype(np.float32)
            for layer, leaves in shapes["encoder"].items() for leaf, s in leaves.items()}
  np.savez(tmp_path / "enc.npz", **arrays)
  new = aw.encoder_from_npz(params, str(tmp_path / "enc.npz"))
  assert jax.tree.structure(new) == jax.tree.structure(params)
  np.testing.assert_array_equal(new["encoder"]["fc6"]["kernel"], arrays["fc6/kernel"])
  assert new["head"] is params["head"]
  assert not np.any(np.asarray(params["encoder"]["fc6"]["kernel"]))  # the input is kept

  bad = dict(arrays, **{"conv3/kernel": np.zeros((3, 3, 8, 24), np.float32)})
  np.savez(tmp_path / "bad.npz", **bad)
  expected = tuple(shapes["encoder"]["conv3"]["kernel"].shape)
  with pytest.raises(ValueError, match=rf"'conv3/kernel' has shape \(3, 3, 8, 24\), expected "
                                       rf"{re_tuple(expected)}"):
    aw.encoder_from_npz(params, str(tmp_path / "bad.npz"))
  missing = {k: v for k, v in arrays.items() if k != "fc7/bias"}
  np.savez(tmp_path / "missing.npz", **missing, fc8=np.zeros(3))
  with pytest.raises(ValueError, match=r"missing keys \['fc7/bias'\], unexpected keys \['fc8'\]"):
    aw.encoder_from_npz(params, str(tmp_path / "missing.npz"))
  with pytest.raises(ValueError, match=r"conv1/kernel.*expected \(11, 11, 3, 96\)"):
    aw.load_npz(str(tmp_path / "enc.npz"))  # ImageNet AlexNet's shapes by default


def test_command_line(tmp_path, monkeypatch, capsys):
  data = _net([_layer("conv2", [_blob(CONV_OIHW), _blob(CONV_BIAS)]),
               _layer("fc6", [_blob(FC_WEIGHTS), _blob(FC_BIAS)])])
  monkeypatch.setattr(aw, "ALEXNET_KERNEL_SHAPES", SHAPES)
  out = tmp_path / "out.npz"
  assert aw.main([_write(tmp_path / "net.caffemodel", data), str(out)]) == 0
  assert "fc6/kernel" in capsys.readouterr().out
  with np.load(out) as npz:
    assert sorted(npz.files) == ["conv2/bias", "conv2/kernel", "fc6/bias", "fc6/kernel"]
