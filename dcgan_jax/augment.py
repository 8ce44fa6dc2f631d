"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): random,
differentiable transformations applied to real AND generated images before D, in D's and G's updates alike.

A policy is a comma list of transformations (`config.diffaugment`), applied in the order given:

| name          | per image                                                                                        |
| ------------- | ------------------------------------------------------------------------------------------------ |
| `color`       | brightness + U(-0.5, 0.5); saturation: deviation from the pixel's channel mean x U(0, 2);          |
|               | contrast: deviation from the image mean x U(0.5, 1.5) (the paper's three, in this order)          |
| `translation` | shift by integers in [-r, r] on each axis, r = round(size / 8), zeros shifted in                  |
| `cutout`      | zero a square of half the size (rounded), its centre uniform over the image, clipped at the edges |

Every transformation is a gather or an affine map of the pixels, so gradients flow through it to G's output. The
random draws come from a key the caller derives from the train state's key, so a resumed run augments exactly as
an uninterrupted one. Images are float [B, H, W, C] in the data range; outputs have the same shape and dtype.
"""

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

TRANSLATION_RATIO = 0.125  # The paper's: shifts of up to 1/8 of the image size.
CUTOUT_RATIO = 0.5  # The paper's: a square of half the image size.


def color(x: Array, key: Array) -> Array:
  """Random brightness, saturation and contrast per image. x: float [B, H, W, C] -> the same shape.

  Grayscale images (C = 1) are their own channel mean, so saturation leaves them unchanged.
  """
  b = x.shape[0]
  k1, k2, k3 = jax.random.split(key, 3)
  shape = (b, 1, 1, 1)
  x = x + (jax.random.uniform(k1, shape, x.dtype) - 0.5)
  mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - mean) * (jax.random.uniform(k2, shape, x.dtype) * 2) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (jax.random.uniform(k3, shape, x.dtype) + 0.5) + mean


def _shift_axis(x: Array, shift: Array, axis: int) -> Array:
  """out[b, ..., i, ...] = x[b, ..., i - shift[b], ...] along `axis` (1 or 2), 0 where that is outside."""
  size = x.shape[axis]
  source = jnp.arange(size)[None, :] - shift[:, None]  # [B, size]
  inside = (source >= 0) & (source < size)
  index_shape = [x.shape[0], 1, 1, 1]
  index_shape[axis] = size
  index = jnp.clip(source, 0, size - 1).reshape(index_shape)
  gathered = jnp.take_along_axis(x, jnp.broadcast_to(index, x.shape[:axis] + (size,) + x.shape[axis + 1:]), axis)
  return gathered * inside.reshape(index_shape).astype(x.dtype)


def translate(x: Array, shift_h: Array, shift_w: Array) -> Array:
  """Each image moved down by `shift_h[b]` and right by `shift_w[b]` pixels (int [B], negative: up / left), zeros
  shifted in: out[b, i, j] = x[b, i - shift_h[b], j - shift_w[b]]. x: float [B, H, W, C] -> the same shape."""
  return _shift_axis(_shift_axis(x, shift_h, 1), shift_w, 2)


def max_shift(size: int) -> int:
  """The largest translation of an axis of `size` pixels: round(size * TRANSLATION_RATIO) (3.5 -> 4)."""
  return int(size * TRANSLATION_RATIO + 0.5)


def translation(x: Array, key: Array) -> Array:
  """`translate` by integer shifts uniform in [-max_shift(H), max_shift(H)] (and W), drawn per image."""
  b, h, w = x.shape[:3]
  kh, kw = jax.random.split(key)
  shift_h = jax.random.randint(kh, (b,), -max_shift(h), max_shift(h) + 1)
  shift_w = jax.random.randint(kw, (b,), -max_shift(w), max_shift(w) + 1)
  return translate(x, shift_h, shift_w)


def cutout_size(size: int) -> int:
  """The side of the cut square along an axis of `size` pixels: round(size * CUTOUT_RATIO)."""
  return int(size * CUTOUT_RATIO + 0.5)


def cutout(x: Array, key: Array) -> Array:
  """Zeroes one square per image: rows [oh - s//2, oh - s//2 + s) x the same for columns, clipped to the image, with
  s = cutout_size and the centres oh, ow uniform in [0, H + (1 - s % 2)) (the paper's draw). x: float [B, H, W, C]."""
  b, h, w = x.shape[:3]
  sh, sw = cutout_size(h), cutout_size(w)
  kh, kw = jax.random.split(key)
  top = jax.random.randint(kh, (b, 1), 0, h + (1 - sh % 2)) - sh // 2
  left = jax.random.randint(kw, (b, 1), 0, w + (1 - sw % 2)) - sw // 2
  rows, cols = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
  in_rows = (rows >= top) & (rows < top + sh)  # [B, H]
  in_cols = (cols >= left) & (cols < left + sw)  # [B, W]
  cut = in_rows[:, :, None] & in_cols[:, None, :]
  return x * (~cut)[..., None].astype(x.dtype)


TRANSFORMS: dict[str, Callable[[Array, Array], Array]] = {
    'color': color, 'translation': translation, 'cutout': cutout}
POLICIES = tuple(TRANSFORMS)  # The names a policy may list.


def parse(policy: str) -> tuple[str, ...]:
  """`'translation,cutout'` -> `('translation', 'cutout')`; '' -> (). Spaces around names are ignored.

  Raises:
    ValueError: a name that is not one of `POLICIES`, or one given twice.
  """
  names = tuple(name.strip() for name in policy.split(',') if name.strip())
  for name in names:
    if name not in TRANSFORMS:
      raise ValueError(f'unknown DiffAugment transformation {name!r}; use a comma list of {", ".join(POLICIES)}')
  if len(set(names)) != len(names):
    raise ValueError(f'DiffAugment policy {policy!r} names a transformation twice')
  return names


def apply(x: Array, key: Array, policy: str) -> Array:
  """`x` through each transformation of `policy` in order, each with its own key split from `key`; `x` itself when
  the policy is empty. x: float [B, H, W, C] -> the same shape and dtype. Differentiable in x."""
  names = parse(policy)
  if not names:
    return x
  for name, k in zip(names, jax.random.split(key, len(names))):
    x = TRANSFORMS[name](x, k)
  return x
