r"""ImageNet AlexNet weights for FCN-AlexNet's encoder (conv1…fc7), from a file you supply.

The FCN reference initialises conv1…fc7 of `voc-fcn-alexnet` from an
ImageNet-trained AlexNet (Caffe). jaxpu does not ship or download weights:
convert your own copy of the BVLC `.caffemodel` once,

    python -m jaxpu.models.alexnet_weights bvlc_alexnet.caffemodel alexnet.npz

and load the `.npz` into a model's parameters (`encoder_from_npz`).

The `.npz` layout (float32, Flax's HWIO kernels, matching `fcn_alexnet`'s
`params["encoder"]` at `width=1`):

| key | shape | | key | shape |
|---|---|---|---|---|
| `conv1/kernel` | (11, 11, 3, 96) | | `conv1/bias` | (96,) |
| `conv2/kernel` | (5, 5, 48, 256) | | `conv2/bias` | (256,) |
| `conv3/kernel` | (3, 3, 256, 384) | | `conv3/bias` | (384,) |
| `conv4/kernel` | (3, 3, 192, 384) | | `conv4/bias` | (384,) |
| `conv5/kernel` | (3, 3, 192, 256) | | `conv5/bias` | (256,) |
| `fc6/kernel` | (6, 6, 256, 4096) | | `fc6/bias` | (4096,) |
| `fc7/kernel` | (1, 1, 4096, 4096) | | `fc7/bias` | (4096,) |

Grouped layers (conv2, conv4, conv5: 2 groups) keep Caffe's convention,
which is also Flax's: output block g sees input block g, the kernel holds
`in / groups` input channels. Caffe kernels are OIHW `(out, in / groups, h,
w)` and are transposed to HWIO; Caffe's `InnerProduct` fc6 and fc7
(`(4096, 9216)` and `(4096, 4096)`, the input flattened in C, H, W order)
are the same numbers as the 6×6 and 1×1 convolutions FCN's net surgery
makes of them, and are reshaped so.

Input convention: Caffe's ImageNet models read BGR images on 0-255 minus a
mean, which is jaxpu's `preprocessing="caffe"` (`jaxpu.data.batching`:
channels reversed to BGR, float 0-255, minus `CAFFE_MEAN_BGR`), so conv1's
input channels are used as they are, in B, G, R order. FCN-AlexNet pools
before its LRN (pool → norm, as BVLC's CaffeNet `bvlc_reference_caffenet`);
BVLC's `bvlc_alexnet` normalises before pooling. The parameter shapes of both
are the ones above.

The converter reads the `.caffemodel` (a binary `NetParameter` protocol
buffer) with a small reader of the protobuf wire format written here
(no Caffe or protobuf dependency): layers in `layer` (field 100,
`LayerParameter`: name 1, blobs 7), or the older `layers` (field 2,
`V1LayerParameter`: name 4, blobs 6, or a nested V0 `layer` 1: name 1, blobs
50); each blob a `BlobProto` with `shape` (7, `BlobShape.dim` 1) or the
legacy num, channels, height, width (1-4), and `data` (5, float) or
`double_data` (8).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Mapping, Optional

import numpy as np

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")

# The kernels of ImageNet AlexNet as fcn_alexnet's encoder holds them (HWIO).
ALEXNET_KERNEL_SHAPES = {
    "conv1": (11, 11, 3, 96),
    "conv2": (5, 5, 48, 256),
    "conv3": (3, 3, 256, 384),
    "conv4": (3, 3, 192, 384),
    "conv5": (3, 3, 192, 256),
    "fc6": (6, 6, 256, 4096),
    "fc7": (1, 1, 4096, 4096),
}


def npz_shapes(kernel_shapes: Optional[Mapping[str, tuple]] = None) -> dict:
  """`{"conv1/kernel": HWIO, "conv1/bias": (O,), ...}`: the keys and shapes of the `.npz`.

  `kernel_shapes`: layer → HWIO kernel shape (None: `ALEXNET_KERNEL_SHAPES`).
  """
  kernel_shapes = ALEXNET_KERNEL_SHAPES if kernel_shapes is None else kernel_shapes
  shapes = {}
  for name, shape in kernel_shapes.items():
    shapes[f"{name}/kernel"] = tuple(shape)
    shapes[f"{name}/bias"] = (shape[-1],)
  return shapes


# ----------------------------------------------------------------------------
# The protobuf wire format.
# ----------------------------------------------------------------------------

_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5


def _varint(buf, pos: int) -> tuple[int, int]:
  """The base-128 varint at `buf[pos]` (7 bits a byte, least significant first)."""
  result, shift = 0, 0
  while True:
    if pos >= len(buf):
      raise ValueError("Truncated protobuf: a varint runs past the end of its message.")
    byte = buf[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return result, pos
    shift += 7
    if shift > 63:
      raise ValueError("Malformed protobuf: a varint longer than 10 bytes.")


def _fields(buf):
  """Yields `(field_number, wire_type, value)` of one message's bytes, in order.

  Values: an int (varint), a memoryview of the payload (length-delimited), or
  the raw 4 or 8 bytes (fixed32, fixed64).
  """
  buf = memoryview(buf)
  pos = 0
  while pos < len(buf):
    key, pos = _varint(buf, pos)
    field, wire = key >> 3, key & 7
    if wire == _VARINT:
      value, pos = _varint(buf, pos)
    elif wire == _LENGTH:
      size, pos = _varint(buf, pos)
      if pos + size > len(buf):
        raise ValueError(f"Truncated protobuf: field {field} needs {size} bytes, "
                         f"{len(buf) - pos} are left.")
      value, pos = buf[pos:pos + size], pos + size
    elif wire == _FIXED32:
      value, pos = bytes(buf[pos:pos + 4]), pos + 4
    elif wire == _FIXED64:
      value, pos = bytes(buf[pos:pos + 8]), pos + 8
    else:
      raise ValueError(f"Unsupported protobuf wire type {wire} (field {field}); groups are "
                       f"not used by caffe.proto.")
    if pos > len(buf):
      raise ValueError(f"Truncated protobuf in field {field}.")
    yield field, wire, value


def _packed_varints(buf) -> list[int]:
  values, pos = [], 0
  while pos < len(buf):
    value, pos = _varint(buf, pos)
    values.append(value)
  return values


def _parse_blob(buf) -> np.ndarray:
  """A `BlobProto` as a float32 array of its shape (`shape`, or legacy N, C, H, W)."""
  dims, legacy = None, {}
  floats, doubles = [], []
  for field, wire, value in _fields(buf):
    if field == 7 and wire == _LENGTH:  # BlobShape
      dims = []
      for f, w, v in _fields(value):
        if f == 1:
          dims.extend(_packed_varints(v) if w == _LENGTH else [v])
    elif field in (1, 2, 3, 4) and wire == _VARINT:
      legacy[field] = value
    elif field == 5:
      floats.append(np.frombuffer(value, "<f4") if wire == _LENGTH
                    else np.frombuffer(value, "<f4", count=1))
    elif field == 8:
      doubles.append(np.frombuffer(value, "<f8") if wire == _LENGTH
                     else np.frombuffer(value, "<f8", count=1))
  parts = floats or doubles
  data = (np.concatenate(parts) if parts else np.zeros(0)).astype(np.float32)
  if dims is None:
    dims = [legacy.get(f, 0) for f in (1, 2, 3, 4)] if legacy else [data.size]
  if data.size != int(np.prod(dims)):
    raise ValueError(f"A blob of shape {tuple(dims)} holds {data.size} values, not "
                     f"{int(np.prod(dims))}.")
  return data.reshape(dims)


def _parse_layer(buf, name_field: int, blobs_field: int) -> tuple[Optional[str], list]:
  name, blobs, v0 = None, [], None
  for field, wire, value in _fields(buf):
    if wire != _LENGTH:
      continue
    if field == name_field:
      name = bytes(value).decode("utf-8")
    elif field == blobs_field:
      blobs.append(_parse_blob(value))
    elif field == 1 and name_field == 4:  # V1LayerParameter.layer: a V0LayerParameter
      v0 = value
  if v0 is not None and name is None and not blobs:
    return _parse_layer(v0, 1, 50)
  return name, blobs


def read_caffemodel(path: str) -> dict[str, list[np.ndarray]]:
  """The blobs of every layer that has any: `{layer name: [weights, bias, ...]}`.

  Arrays are float32 in Caffe's shapes (kernels `(out, in / groups, h, w)`,
  `InnerProduct` weights `(out, in)` or legacy `(1, 1, out, in)`), in file
  order. Reads `layer` (current) and `layers` (V1, V0) entries.
  """
  with open(path, "rb") as f:
    data = f.read()
  layers: dict[str, list[np.ndarray]] = {}
  for field, wire, value in _fields(data):
    if wire != _LENGTH or field not in (100, 2):
      continue
    name, blobs = _parse_layer(value, 1, 7) if field == 100 else _parse_layer(value, 4, 6)
    if not blobs:
      continue
    if name in layers:
      raise ValueError(f"{path}: two layers named {name!r} hold blobs.")
    layers[name] = blobs
  return layers


# ----------------------------------------------------------------------------
# Caffe → Flax.
# ----------------------------------------------------------------------------


def _squeeze_leading(shape) -> tuple:
  shape = tuple(int(d) for d in shape)
  while len(shape) > 1 and shape[0] == 1:
    shape = shape[1:]
  return shape


def caffe_kernel_to_hwio(name: str, blob: np.ndarray, hwio: tuple) -> np.ndarray:
  """Caffe weights `(O, I, H, W)`, or `InnerProduct` `(O, I·H·W)`, as the HWIO kernel `hwio`."""
  h, w, i, o = hwio
  found = _squeeze_leading(blob.shape)
  if found not in ((o, i, h, w), (o, i * h * w)):
    raise ValueError(f"Layer {name!r}: expected Caffe weights of shape (out, in, h, w) = "
                     f"{(o, i, h, w)} (or {(o, i * h * w)} for an InnerProduct), found "
                     f"{tuple(blob.shape)}.")
  return np.ascontiguousarray(blob.reshape(o, i, h, w).transpose(2, 3, 1, 0), np.float32)


def caffe_to_arrays(layers: Mapping[str, list],
                    kernel_shapes: Optional[Mapping[str, tuple]] = None) -> dict:
  """The `.npz` arrays (`"conv1/kernel"`, ...) of `read_caffemodel`'s `layers`.

  `kernel_shapes`: layer → HWIO kernel shape (None: `ALEXNET_KERNEL_SHAPES`).
  """
  kernel_shapes = ALEXNET_KERNEL_SHAPES if kernel_shapes is None else kernel_shapes
  missing = [n for n in kernel_shapes if n not in layers]
  if missing:
    raise ValueError(f"The caffemodel has no layer(s) {missing} with blobs; it has "
                     f"{sorted(layers)}.")
  arrays = {}
  for name, hwio in kernel_shapes.items():
    blobs = layers[name]
    if len(blobs) != 2:
      raise ValueError(f"Layer {name!r}: expected 2 blobs (weights, bias), found {len(blobs)}.")
    arrays[f"{name}/kernel"] = caffe_kernel_to_hwio(name, blobs[0], tuple(hwio))
    bias = blobs[1].reshape(_squeeze_leading(blobs[1].shape))
    if bias.shape != (hwio[-1],):
      raise ValueError(f"Layer {name!r}: expected a bias of shape {(hwio[-1],)}, found "
                       f"{tuple(blobs[1].shape)}.")
    arrays[f"{name}/bias"] = bias.astype(np.float32)
  return arrays


def caffemodel_to_npz(caffemodel_path: str, npz_path: str,
                      kernel_shapes: Optional[Mapping[str, tuple]] = None) -> dict:
  """Converts conv1…fc7 of a Caffe AlexNet `.caffemodel` to the `.npz` layout (module docstring).

  `kernel_shapes`: layer name → HWIO kernel shape of the layers to convert
  (None: ImageNet AlexNet's, `ALEXNET_KERNEL_SHAPES`). Other layers (fc8, score_fr, ...) are left
  out. Returns the arrays written.
  """
  arrays = caffe_to_arrays(read_caffemodel(caffemodel_path), kernel_shapes)
  with open(npz_path, "wb") as f:
    np.savez(f, **arrays)
  return arrays


# ----------------------------------------------------------------------------
# Loading.
# ----------------------------------------------------------------------------


def load_npz(path: str, kernel_shapes: Optional[Mapping[str, tuple]] = None
             ) -> dict[str, dict[str, np.ndarray]]:
  """The `.npz` as encoder params `{"conv1": {"kernel": HWIO, "bias": (O,)}, ...}` (float32).

  `kernel_shapes`: layer → HWIO kernel shape (None: ImageNet AlexNet's).
  Every key of `npz_shapes(kernel_shapes)` must be present with its shape,
  and no other key (ValueError naming the key, the expected and found shapes).
  """
  expected = npz_shapes(kernel_shapes)
  with np.load(path) as npz:
    found = {k: npz[k] for k in npz.files}
  missing = [k for k in expected if k not in found]
  unexpected = sorted(k for k in found if k not in expected)
  if missing or unexpected:
    raise ValueError(f"{path}: missing keys {missing}, unexpected keys {unexpected}; the "
                     f"layout is {list(expected)}.")
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, shape in expected.items():
    array = found[key]
    if tuple(array.shape) != tuple(shape):
      raise ValueError(f"{path}: {key!r} has shape {tuple(array.shape)}, expected "
                       f"{tuple(shape)}.")
    layer, leaf = key.split("/")
    params.setdefault(layer, {})[leaf] = np.asarray(array, np.float32)
  return params


def encoder_from_npz(params: Mapping[str, Any], path: str) -> dict:
  """`params` (fcn_alexnet's `{"encoder", "head"}`) with the encoder loaded from `path`.

  The expected shapes are those of `params["encoder"]` (so `width=1`, ImageNet
  AlexNet's); the head is kept. Arrays take the dtype of the params they
  replace.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  encoder = params["encoder"]
  if sorted(encoder) != sorted(LAYERS):
    raise ValueError(f"encoder_from_npz expects fcn_alexnet's encoder {list(LAYERS)}, got "
                     f"{sorted(encoder)}.")
  kernel_shapes = {name: tuple(encoder[name]["kernel"].shape) for name in LAYERS}
  loaded = load_npz(path, kernel_shapes)
  new_encoder = {name: {leaf: jnp.asarray(loaded[name][leaf], encoder[name][leaf].dtype)
                        for leaf in ("kernel", "bias")} for name in LAYERS}
  return {**params, "encoder": new_encoder}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m jaxpu.models.alexnet_weights",
      description="Convert conv1-fc7 of a Caffe AlexNet .caffemodel to jaxpu's .npz layout.")
  parser.add_argument("caffemodel", help="the BVLC AlexNet (or CaffeNet) .caffemodel")
  parser.add_argument("npz", help="the .npz file to write")
  args = parser.parse_args(argv)
  arrays = caffemodel_to_npz(args.caffemodel, args.npz)
  for key, array in arrays.items():
    print(f"{key:14s} {str(array.shape):22s} mean {array.mean():+.4g}  std {array.std():.4g}")
  print(f"Wrote {args.npz}.")
  return 0


if __name__ == "__main__":
  sys.exit(main())
