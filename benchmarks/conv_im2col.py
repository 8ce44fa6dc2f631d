"""Times im2col + matmul convolutions against flax.linen.Conv on the DCGAN discriminator layers.

Run from the repository root:

  python benchmarks/conv_im2col.py [--reps 7]

Hypothesis under test: XLA:CPU runs the discriminator's strided convolutions
well below its matmul rate, so rewriting each one as a patch matrix times the
reshaped kernel (forward), `patches^T @ dY` (kernel gradient) and `dY @ W^T`
followed by col2im (input gradient) should be faster.

Every variant is a `jax.custom_vjp` whose backward is two matmuls plus col2im,
so no lhs-dilated convolution and no autodiff of
`lax.conv_general_dilated_patches` is involved. The variants differ only in how
the patch matrix is built and how it is scattered back:

* slices: kh*kw strided `lax.slice`s of the padded input, stacked;
* phase: pad to a multiple of the stride and split each spatial axis into
  (coarse, phase) with a free reshape, so every tap is a unit-stride slice;
* lax patches: `lax.conv_general_dilated_patches` (channel-major features,
  so the kernel is permuted instead of the patches);
* saved: like slices, but the forward keeps the patch matrix as the residual
  instead of rebuilding it from `x` in the backward pass;
* scatter col2im: like slices, but col2im is kh*kw strided `.at[...].add`
  instead of the default phase-grouped pad-and-add.

"matmuls only" times just the three matmuls of the im2col formulation on
precomputed operands: a lower bound for any im2col variant. When it is not
clearly below the convolution's time, no patch layout can win.

All columns are timed alternately in one process so that load from other jobs
hits them equally; each number is the median over `--reps` jitted calls after
a warm-up (compile) call. Before timing, every variant is checked against
`lax.conv_general_dilated` (values and both gradients) on small batches.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import machine  # pylint: disable=g-import-not-at-top,wrong-import-position

Array = jax.Array
Pads = tuple[tuple[int, int], tuple[int, int]]

_DN = ('NHWC', 'HWIO', 'NHWC')

# (name, batch, input [H, W, Cin], Cout, kernel, stride, padding): the
# discriminator layers of the MNIST DCGAN (batch 128) and of the 64x64 DCGAN
# (batch 64).
_LAYERS = [
    ('MNIST 28x28x1 -> 14x14x128', 128, (28, 28, 1), 128, 5, 2, 'SAME'),
    ('MNIST 14x14x128 -> 7x7x256', 128, (14, 14, 128), 256, 5, 2, 'SAME'),
    ('MNIST 7x7x256 -> 1x1x1', 128, (7, 7, 256), 1, 7, 1, 'VALID'),
    ('64px 64x64x3 -> 32x32x64', 64, (64, 64, 3), 64, 4, 2, 'SAME'),
    ('64px 32x32x64 -> 16x16x128', 64, (32, 32, 64), 128, 4, 2, 'SAME'),
    ('64px 16x16x128 -> 8x8x256', 64, (16, 16, 128), 256, 4, 2, 'SAME'),
    ('64px 8x8x256 -> 4x4x512', 64, (8, 8, 256), 512, 4, 2, 'SAME'),
]


def _out_and_pads(size: int, k: int, s: int, padding: str) -> tuple[int, tuple[int, int]]:
  """Output size and (low, high) input padding, as lax resolves the names."""
  if padding == 'SAME':
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, (total // 2, total - total // 2)
  if padding == 'VALID':
    return (size - k) // s + 1, (0, 0)
  raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


class _Geometry:
  """Shapes shared by the forward and backward pass of one convolution."""

  def __init__(self, x_shape, kernel_shape, strides, padding):
    self.batch, self.h, self.w, self.cin = x_shape
    self.kh, self.kw, _, self.cout = kernel_shape
    self.strides = tuple(strides)
    self.ho, pad_h = _out_and_pads(self.h, self.kh, self.strides[0], padding)
    self.wo, pad_w = _out_and_pads(self.w, self.kw, self.strides[1], padding)
    self.pads: Pads = (pad_h, pad_w)

  @property
  def x_shape(self):
    return (self.batch, self.h, self.w, self.cin)


def _patches_slices(x: Array, g: _Geometry) -> Array:
  (pt, pb), (pl, pr) = g.pads
  sh, sw = g.strides
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  taps = [lax.slice(xp, (0, i, j, 0),
                    (g.batch, i + sh * (g.ho - 1) + 1, j + sw * (g.wo - 1) + 1, g.cin),
                    (1, sh, sw, 1))
          for i in range(g.kh) for j in range(g.kw)]
  # Tap-major, channel-minor features: the row order of an HWIO kernel
  # reshaped to [kh * kw * Cin, Cout].
  return jnp.stack(taps, axis=3).reshape(-1, g.kh * g.kw * g.cin)


def _patches_phase(x: Array, g: _Geometry) -> Array:
  (pt, _), (pl, _) = g.pads
  sh, sw = g.strides
  hq = max(-(-(g.h + sum(g.pads[0])) // sh), (g.kh - 1) // sh + g.ho)
  wq = max(-(-(g.w + sum(g.pads[1])) // sw), (g.kw - 1) // sw + g.wo)
  xp = jnp.pad(x, ((0, 0), (pt, hq * sh - g.h - pt), (pl, wq * sw - g.w - pl), (0, 0)))
  xq = xp.reshape(g.batch, hq, sh, wq, sw, g.cin)
  taps = []
  for i in range(g.kh):
    for j in range(g.kw):
      a, p = divmod(i, sh)
      b, q = divmod(j, sw)
      taps.append(xq[:, a:a + g.ho, p, b:b + g.wo, q, :])
  return jnp.stack(taps, axis=3).reshape(-1, g.kh * g.kw * g.cin)


def _patches_lax(x: Array, g: _Geometry) -> Array:
  # Features come out channel-major ([Cin, kh, kw]); the kernel matrix is
  # permuted to match (see `_kernel_matrix`) rather than transposing patches.
  p = lax.conv_general_dilated_patches(x, (g.kh, g.kw), g.strides, g.pads, dimension_numbers=_DN)
  return p.reshape(-1, p.shape[-1])


def _col2im_phase(dp: Array, g: _Geometry) -> Array:
  """Sums [M, kh*kw*Cin] patch gradients back onto the input without scatter.

  Taps i = p + s*a with the same phase p land on padded rows s*(o + a) + p:
  on the phase sub-grid they are plain shifts, so each phase is a sum of
  padded dense arrays and the phases interleave with a free reshape.
  """
  (pt, pb), (pl, pr) = g.pads
  sh, sw = g.strides
  hq = max(-(-(g.h + pt + pb) // sh), (g.kh - 1) // sh + g.ho)
  wq = max(-(-(g.w + pl + pr) // sw), (g.kw - 1) // sw + g.wo)
  dp = dp.reshape(g.batch, g.ho, g.wo, g.kh, g.kw, g.cin)
  zero = jnp.zeros((), dp.dtype)
  rows = []
  for p in range(sh):
    cols = []
    for q in range(sw):
      acc = jnp.zeros((g.batch, hq, wq, g.cin), dp.dtype)
      for i in range(p, g.kh, sh):
        for j in range(q, g.kw, sw):
          a, b = i // sh, j // sw
          acc = acc + lax.pad(dp[:, :, :, i, j, :], zero,
                              ((0, 0, 0), (a, hq - a - g.ho, 0), (b, wq - b - g.wo, 0), (0, 0, 0)))
      cols.append(acc)
    rows.append(jnp.stack(cols, axis=3))
  full = jnp.stack(rows, axis=2).reshape(g.batch, hq * sh, wq * sw, g.cin)
  return full[:, pt:pt + g.h, pl:pl + g.w, :]


def _col2im_scatter(dp: Array, g: _Geometry) -> Array:
  (pt, pb), (pl, pr) = g.pads
  sh, sw = g.strides
  dp = dp.reshape(g.batch, g.ho, g.wo, g.kh, g.kw, g.cin)
  dxp = jnp.zeros((g.batch, g.h + pt + pb, g.w + pl + pr, g.cin), dp.dtype)
  for i in range(g.kh):
    for j in range(g.kw):
      dxp = dxp.at[:, i:i + sh * (g.ho - 1) + 1:sh, j:j + sw * (g.wo - 1) + 1:sw, :].add(dp[:, :, :, i, j, :])
  return dxp[:, pt:pt + g.h, pl:pl + g.w, :]


def _make_im2col_conv(patches: Callable[[Array, _Geometry], Array],
                      col2im: Callable[[Array, _Geometry], Array],
                      channel_major: bool = False,
                      save_patches: bool = False) -> Callable[..., Array]:
  """Builds `conv2d(x, kernel, strides, padding)` from one patch/col2im pair."""

  def kernel_matrix(kernel: Array) -> Array:
    kh, kw, cin, cout = kernel.shape
    if channel_major:
      kernel = jnp.transpose(kernel, (2, 0, 1, 3))
    return kernel.reshape(kh * kw * cin, cout)

  def kernel_from_matrix(m: Array, g: _Geometry) -> Array:
    if channel_major:
      return jnp.transpose(m.reshape(g.cin, g.kh, g.kw, g.cout), (1, 2, 0, 3))
    return m.reshape(g.kh, g.kw, g.cin, g.cout)

  @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
  def conv(x, kernel, g):
    return (patches(x, g) @ kernel_matrix(kernel)).reshape(g.batch, g.ho, g.wo, g.cout)

  def conv_fwd(x, kernel, g):
    p = patches(x, g)
    y = (p @ kernel_matrix(kernel)).reshape(g.batch, g.ho, g.wo, g.cout)
    return y, (p if save_patches else x, kernel)

  def conv_bwd(g, residuals, dy):
    px, kernel = residuals
    p = px if save_patches else patches(px, g)
    dy = dy.reshape(-1, g.cout)
    dkernel = kernel_from_matrix(p.T @ dy, g)
    dp = dy @ kernel_matrix(kernel).T
    if channel_major:
      # col2im expects tap-major features.
      dp = jnp.swapaxes(dp.reshape(-1, g.cin, g.kh * g.kw), 1, 2)
    return col2im(dp, g), dkernel

  conv.defvjp(conv_fwd, conv_bwd)

  def conv2d(x, kernel, strides, padding):
    return conv(x, kernel, _Geometry(x.shape, kernel.shape, strides, padding))

  return conv2d


_VARIANTS = {
    'slices': _make_im2col_conv(_patches_slices, _col2im_phase),
    'phase': _make_im2col_conv(_patches_phase, _col2im_phase),
    'lax patches': _make_im2col_conv(_patches_lax, _col2im_phase, channel_major=True),
    'saved': _make_im2col_conv(_patches_slices, _col2im_phase, save_patches=True),
    'scatter col2im': _make_im2col_conv(_patches_slices, _col2im_scatter),
}


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DN)


def _check_variants() -> None:
  """Fails loudly if any variant disagrees with lax on a layer's geometry."""
  for name, _, (h, w, cin), cout, k, s, padding in _LAYERS:
    kx, kk, kc = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (2, h, w, cin), jnp.float32)
    kernel = jax.random.normal(kk, (k, k, cin, cout), jnp.float32)

    def value_and_grads(fn, x=x, kernel=kernel, k=k, s=s, padding=padding):
      y, vjp = jax.vjp(lambda a, b: fn(a, b, (s, s), padding), x, kernel)
      return (y, *vjp(jax.random.normal(kc, y.shape, y.dtype)))

    expected = jax.jit(lambda: value_and_grads(_lax_conv))()
    for variant, fn in _VARIANTS.items():
      actual = jax.jit(lambda fn=fn: value_and_grads(fn))()
      for what, a, e in zip(('y', 'dx', 'dkernel'), actual, expected):
        scale = float(jnp.abs(e).max())
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=f'{variant} {what} on {name}')


def _time_once(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _layer_steps(batch, in_shape, cout, k, s, padding):
  """Jitted (x, kernel) -> (dx, dkernel) steps for flax and every variant."""
  key_x, key_k = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (batch, *in_shape), jnp.float32)
  kernel = 0.05 * jax.random.normal(key_k, (k, k, in_shape[-1], cout), jnp.float32)
  flax_conv = nn.Conv(cout, (k, k), strides=(s, s), padding=padding, use_bias=False)

  def grad_step(fn):
    # A quadratic loss so the cotangent depends on the output, as in training.
    return jax.jit(jax.grad(lambda x, kernel: jnp.sum(jnp.square(fn(x, kernel))), argnums=(0, 1)))

  steps = {'flax': (grad_step(lambda x, kernel: flax_conv.apply({'params': {'kernel': kernel}}, x)),
                    (x, kernel))}
  for variant, fn in _VARIANTS.items():
    steps[variant] = (grad_step(lambda x, kernel, fn=fn: fn(x, kernel, (s, s), padding)), (x, kernel))

  g = _Geometry(x.shape, kernel.shape, (s, s), padding)
  key_p, key_d = jax.random.split(jax.random.key(1))
  p = jax.random.normal(key_p, (g.batch * g.ho * g.wo, k * k * g.cin), jnp.float32)
  dy = jax.random.normal(key_d, (p.shape[0], cout), jnp.float32)
  w = kernel.reshape(-1, cout)
  steps['matmuls only'] = (jax.jit(lambda p, w, dy: (p @ w, p.T @ dy, dy @ w.T)), (p, w, dy))
  return steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=7)
  args = parser.parse_args()

  _check_variants()
  rows = []
  for name, batch, in_shape, cout, k, s, padding in _LAYERS:
    steps = _layer_steps(batch, in_shape, cout, k, s, padding)
    for fn, step_args in steps.values():  # compile + warm-up
      jax.block_until_ready(fn(*step_args))
    times = {impl: [] for impl in steps}
    for _ in range(args.reps):
      for impl, (fn, step_args) in steps.items():
        times[impl].append(_time_once(fn, *step_args))
    rows.append((name, {impl: statistics.median(t) for impl, t in times.items()}))

  command = 'python ' + ' '.join([os.path.relpath(__file__)] + sys.argv[1:])
  print(f'Command: `{command}`  ')
  print(f'Machine: {machine.cpu_model()}, {os.cpu_count()} cores, '
        f'jax {jax.__version__} ({jax.default_backend()}), shared with other jobs  ')
  print(f'Forward+backward (grads w.r.t. input and kernel), float32, no bias; '
        f'median of {args.reps} jitted calls, timed alternately. Ratios are '
        f'flax time / variant time (>1 means faster than flax.linen.Conv).')
  print()
  impls = [impl for impl in rows[0][1] if impl != 'flax']
  print('| layer | flax.linen.Conv (ms) | ' + ' | '.join(impls) + ' |')
  print('| --- | ---: | ' + ' | '.join('---:' for _ in impls) + ' |')
  for name, med in rows:
    ratios = ' | '.join(f'{med["flax"] / med[impl]:.2f}x' for impl in impls)
    print(f'| {name} | {med["flax"] * 1e3:.1f} | {ratios} |')


if __name__ == '__main__':
  main()
