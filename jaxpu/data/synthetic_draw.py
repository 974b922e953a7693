"""Procedural drawing of the embedded segmentation dataset (NumPy only).

Each image shows one (or, in the multi-object setting, several) objects on a
cluttered background. An object category is a (shape, texture) pair, see
`jaxpu.data.classes.SYNTHETIC_CATEGORIES`; every shape occurs with two textures
(except the two one-off shapes) and every texture with four shapes, so a
category is recognisable only by shape and appearance together.

Clutter, the same for every category: a smooth colour field, a low-contrast
texture over it, a full-contrast textured decoy blob (a texture with no
category shape), thin distractor strokes behind and in front of the objects,
and pixel noise. Object colours, position, scale, rotation and aspect are
random, so neither colour nor position identifies a category.

Every image is drawn from its own generator `np.random.default_rng((seed,
split_index, index))`: an image depends only on its seed, split and index,
never on the order or the number of images drawn.

Masks follow PASCAL VOC: class mask 0 = background, 1..20 = category,
255 = void; instance mask 0 = background, k = k-th object, 255 = void. The
void band is the `void_border` background pixels nearest the objects (VOC has
a 5-pixel band at 500 pixels; one pixel at 32).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxpu.data import classes

VOID = 255

# Shape outlines as polygons in the unit disc (vertices, counter-clockwise).
def _regular(n, radius=1.0, phase=np.pi / 2):
  a = phase + 2 * np.pi * np.arange(n) / n
  return np.stack([radius * np.cos(a), radius * np.sin(a)], -1)


def _star(points=5, outer=1.0, inner=0.45):
  a = np.pi / 2 + np.pi * np.arange(2 * points) / points
  r = np.where(np.arange(2 * points) % 2 == 0, outer, inner)
  return np.stack([r * np.cos(a), r * np.sin(a)], -1)


_CROSS = 0.95 * np.array([[0.3, 1], [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3],
                          [-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3]])
_POLYGONS = {
    "square": 0.85 * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]]),
    "triangle": _regular(3),
    "diamond": np.array([[0, 1], [-0.55, 0], [0, -1], [0.55, 0]]),
    "hexagon": _regular(6, 0.95, 0.0),
    "cross": _CROSS,
    "star": _star(),
}


def _inside_polygon(u, v, poly):
  """Even-odd rule point-in-polygon test, vectorised over points."""
  inside = np.zeros(u.shape, bool)
  x1, y1 = poly[:, 0], poly[:, 1]
  x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
  for a, b, c, d in zip(x1, y1, x2, y2):
    crosses = (b > v) != (d > v)
    with np.errstate(divide="ignore", invalid="ignore"):
      x_cross = (c - a) * (v - b) / (d - b) + a
    inside ^= crosses & (u < x_cross)
  return inside


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Boolean mask of `shape` at object coordinates (u, v) (unit disc scale)."""
  if shape in _POLYGONS:
    return _inside_polygon(u, v, _POLYGONS[shape])
  r2 = u * u + v * v
  if shape == "circle":
    return r2 <= 0.9
  if shape == "ellipse":
    return u * u + (v / 0.5) ** 2 <= 1.0
  if shape == "crescent":
    return (r2 <= 1.0) & ((u - 0.5) ** 2 + v * v > 0.7 ** 2)
  if shape == "frame":
    m = np.maximum(np.abs(u), np.abs(v))
    return (m <= 0.9) & (m >= 0.5)
  if shape == "figure":  # head over a body: the "person" shape
    head = u * u + (v - 0.62) ** 2 <= 0.3 ** 2
    body = (v <= 0.3) & (v >= -1.0) & (np.abs(u) <= 0.3 + 0.25 * (0.3 - v) / 1.3)
    return head | body
  raise ValueError(f"Unknown shape {shape!r}.")


def texture(kind: str, x: np.ndarray, y: np.ndarray, u: np.ndarray, period: float):
  """Texture weight in [0, 1] at rotated pixel coordinates (x, y).

  `u` (object coordinate, ~[-1, 1]) splits the two-tone texture; `period` is
  in pixels.
  """
  if kind == "stripes":
    return (np.sin(2 * np.pi * x / period) > 0).astype(np.float32)
  if kind == "dots":
    fx = np.mod(x, period) - period / 2
    fy = np.mod(y, period) - period / 2
    return (fx * fx + fy * fy <= (0.32 * period) ** 2).astype(np.float32)
  if kind == "checker":
    return (np.mod(np.floor(x / period) + np.floor(y / period), 2)).astype(np.float32)
  if kind == "solid":
    return np.zeros_like(x, np.float32)
  if kind == "twotone":  # two halves, split through the centre
    return (u > 0).astype(np.float32)
  raise ValueError(f"Unknown texture {kind!r}.")


@dataclasses.dataclass(frozen=True)
class DrawSpec:
  """How images are drawn (fields of the TFDS builder config).

  `min_radius` / `max_radius`: object radius bounds as fractions of the side
  (None: 0.28 / 0.40 for a lone object, 0.14 / 0.24 for several);
  `decoy_probability`: chance of the background's decoy blob;
  `texture_scale`: a factor on the object texture periods. The defaults
  draw every existing config unchanged.
  """
  image_size: int = 32
  min_objects: int = 1
  max_objects: int = 1
  void_border: int = 1
  noise_std: float = 0.03
  min_radius: float | None = None
  max_radius: float | None = None
  decoy_probability: float = 0.8
  texture_scale: float = 1.0

  def radius_range(self, num_objects: int) -> tuple[float, float]:
    """(min, max) object radius as fractions of the side for `num_objects` objects."""
    low, high = (0.28, 0.40) if num_objects == 1 else (0.14, 0.24)
    return (low if self.min_radius is None else self.min_radius,
            high if self.max_radius is None else self.max_radius)


def _contrasting_colours(rng, min_difference=0.35):
  """Two colours whose mean intensities differ by at least `min_difference`."""
  while True:
    pairs = rng.uniform(0, 1, (64, 2, 3))
    ok = np.flatnonzero(np.abs(pairs[:, 0].mean(-1) - pairs[:, 1].mean(-1)) >= min_difference)
    if ok.size:
      return pairs[ok[0], 0], pairs[ok[0], 1]


def _rotated(rng, xx, yy, cx, cy):
  theta = rng.uniform(0, 2 * np.pi)
  c, s = np.cos(theta), np.sin(theta)
  dx, dy = xx - cx, yy - cy
  return c * dx + s * dy, -s * dx + c * dy, theta


def _background(rng, size, xx, yy, decoy_probability=0.8):
  """Smooth colour field + low-contrast texture + textured decoy blob."""
  corners = rng.uniform(0.1, 0.9, (3, 3, 3))
  t = np.linspace(0, 2, size)
  i0 = np.minimum(t.astype(int), 1)
  f = (t - i0)[:, None]
  rows = corners[i0] * (1 - f[..., None]) + corners[i0 + 1] * f[..., None]  # [size, 3, 3]
  img = rows[:, i0] * (1 - f.T[..., None]) + rows[:, i0 + 1] * f.T[..., None]
  scale = size / 32
  x, y, _ = _rotated(rng, xx, yy, 0, 0)
  kind = rng.choice(classes.SYNTHETIC_TEXTURES)
  weight = texture(kind, x, y, x / size, rng.uniform(3, 6) * scale)
  img = img + rng.uniform(0.05, 0.1) * (weight[..., None] - 0.5) * rng.choice([-1, 1], 3)
  if rng.uniform() < decoy_probability:  # decoy: a textured irregular blob
    field = np.zeros((size, size))
    for _ in range(3):
      gx, gy = rng.uniform(0, size, 2)
      field += np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (rng.uniform(2.5, 5) * scale) ** 2))
    blob = field > rng.uniform(0.5, 0.9)
    a, b = _contrasting_colours(rng)
    x, y, _ = _rotated(rng, xx, yy, 0, 0)
    kind = rng.choice(classes.SYNTHETIC_TEXTURES)
    w = texture(kind, x, y, (x - x[blob].mean()) / (4 * scale) if blob.any() else x, rng.uniform(2.5, 5) * scale)
    img = np.where(blob[..., None], a * (1 - w[..., None]) + b * w[..., None], img)
  return img


def _strokes(rng, img, xx, yy, count, keep=None):
  """Draws `count` thin straight strokes; returns their union mask."""
  size = img.shape[0]
  union = np.zeros(img.shape[:2], bool)
  for _ in range(count):
    (x1, y1), (x2, y2) = rng.uniform(0, size, (2, 2))
    dx, dy = x2 - x1, y2 - y1
    length = max(np.hypot(dx, dy), 1e-6)
    t = np.clip(((xx - x1) * dx + (yy - y1) * dy) / length ** 2, 0, 1)
    dist = np.hypot(xx - (x1 + t * dx), yy - (y1 + t * dy))
    line = dist <= rng.uniform(0.4, 0.8) * size / 32
    img[line] = rng.uniform(0, 1, 3)
    union |= line
  return union


def draw_image(rng: np.random.Generator, spec: DrawSpec, categories):
  """Draws one image with objects of the given categories (ids 1..20).

  Returns (image uint8 [S, S, 3], class mask uint8 [S, S], instance mask uint8
  [S, S], object classes int64 [n]). An object hidden by later ones down to
  less than a third of its area is re-placed, so every object stays visible.
  """
  size = spec.image_size
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  img = _background(rng, size, xx, yy, spec.decoy_probability)
  _strokes(rng, img, xx, yy, rng.integers(1, 4))
  instances = np.zeros((size, size), np.uint8)
  low, high = spec.radius_range(len(categories))
  for k, category in enumerate(categories, start=1):
    shape, kind = classes.SYNTHETIC_CATEGORIES[category - 1][1:]
    for _ in range(20):
      radius = rng.uniform(low, high) * size
      cx, cy = rng.uniform(radius * 0.8, size - radius * 0.8, 2)
      x, y, _ = _rotated(rng, xx, yy, cx, cy)
      aspect = rng.uniform(0.88, 1.12)
      u, v = x / (radius * aspect), y * aspect / radius
      if shape == "figure":  # upright, up to +-25 degrees
        tilt = rng.uniform(-0.45, 0.45)
        dx, dy = xx - cx, yy - cy
        u = (np.cos(tilt) * dx + np.sin(tilt) * dy) / radius
        v = (np.sin(tilt) * dx - np.cos(tilt) * dy) / radius
      mask = shape_mask(shape, u, v)
      visible_before = [(instances == j).sum() for j in range(1, k)]
      if mask.sum() < 8:
        continue
      kept = [((instances == j) & ~mask).sum() for j in range(1, k)]
      if all(b >= a / 3 for a, b in zip(visible_before, kept)):
        break
    a, b = _contrasting_colours(rng)
    period = rng.uniform(4.0, 5.5) * size / 32 * spec.texture_scale
    if kind == "checker":
      period *= 0.75
    w = texture(kind, x, y, u, period)[..., None]
    shade = 1 + 0.15 * (u * np.cos(k) + v * np.sin(k))[..., None] / 2
    obj = np.clip((a * (1 - w) + b * w) * shade, 0, 1)
    img = np.where(mask[..., None], obj, img)
    instances[mask] = k
  front = _strokes(rng, img, xx, yy, rng.integers(0, 2))
  instances[front] = 0
  img = img + rng.normal(0, spec.noise_std, img.shape)
  image = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)

  cats = np.asarray(categories, np.int64)
  lut = np.concatenate([[0], cats]).astype(np.uint8)
  class_mask = lut[instances]
  if spec.void_border > 0:
    objects = instances > 0
    grown = objects.copy()
    for _ in range(spec.void_border):
      g = grown.copy()
      g[1:] |= grown[:-1]
      g[:-1] |= grown[1:]
      g[:, 1:] |= grown[:, :-1]
      g[:, :-1] |= grown[:, 1:]
      grown = g
    band = grown & ~objects
    class_mask[band] = VOID
    instances[band] = VOID
  return image, class_mask, instances, cats


def draw_split(seed: int, split_index: int, categories_per_image, spec: DrawSpec):
  """Yields (index, image, class mask, instance mask, object classes)."""
  for index, cats in enumerate(categories_per_image):
    rng = np.random.default_rng((seed, split_index, index))
    yield (index,) + draw_image(rng, spec, cats)


def split_categories(seed: int, split_index: int, num_images: int, spec: DrawSpec,
                     per_class: int | None = None):
  """The object categories of every image of a split, deterministic in `seed`.

  Single-object: `per_class` images of each category in turn (balanced).
  Multi-object: `min_objects..max_objects` uniformly random categories.
  """
  num_categories = len(classes.SYNTHETIC_CATEGORIES)
  if spec.max_objects == 1:
    return [[1 + i % num_categories] for i in range(per_class * num_categories)]
  rng = np.random.default_rng((seed, split_index, 10 ** 9))
  counts = rng.integers(spec.min_objects, spec.max_objects + 1, num_images)
  return [list(rng.integers(1, num_categories + 1, n)) for n in counts]
