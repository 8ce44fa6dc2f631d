"""oneDNN convolutions as `jax.ffi.ffi_call`s, with every gradient (of any order) again one of them.

Three linear maps of a 2-D convolution (NHWC input, HWIO kernel, float32, explicit non-negative padding) are FFI
targets of `conv.cc`: the forward `F(x, k)`, backward-data `D(dy, k)` (F's transpose in x) and backward-weights
`W(x, dy)` (F's transpose in k). Each is a `jax.custom_vjp` whose VJP is the other two:

* F(x, k):   dx = D(g, k),  dk = W(x, g)
* D(dy, k):  d dy = F(c, k), dk = W(c, dy)     (c: the cotangent, x-shaped)
* W(x, dy):  dx = D(dy, c),  d dy = F(x, c)    (c: kernel-shaped)

so `grad`, `grad` of `grad` (WGAN-GP's penalty), `jit`, `vmap` (the FFI calls run sequentially over the mapped
axis) and `shard_map` all work, and the forward and both gradients of `conv` and of `conv_transpose` (a
transposed convolution is `D` of the strided convolution it is the transpose of) run in oneDNN.

`active()` decides at trace time whether the CPU path uses them (`backend.cpu_conv_mode()`, the library's build
status and a numeric self-check against XLA, `self_check`); `configure(mode)` sets the mode and, for 'onednn',
raises `errors.ConfigError` with one line if the library cannot be used.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Pads = tuple[tuple[int, int], ...]
Pair = tuple[int, int]

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
_VMAP_METHOD = 'sequential'


def _match_vma(a: Array, b: Array) -> tuple[Array, Array]:
  """Both operands varying over the same `shard_map` axes (`check_vma`): the invariant one is cast to varying.

  Done outside the custom VJPs, so a kernel that is the same on every device gets its gradient summed over them by
  the cast's transpose, as for XLA's convolution.
  """
  va, vb = jax.typeof(a).mat.varying, jax.typeof(b).mat.varying
  if vb - va:
    a = lax.pcast(a, tuple(sorted(vb - va)), to='varying')
  if va - vb:
    b = lax.pcast(b, tuple(sorted(va - vb)), to='varying')
  return a, b


def _call(target: str, out_shape: Sequence[int], a: Array, b: Array, strides: Pair, pads: Pads,
          dilation: Pair) -> Array:
  aval = jax.typeof(a)
  if aval.mat.varying:  # Inside shard_map with check_vma: the result varies over the same axes as the operands.
    result = jax.ShapeDtypeStruct(tuple(out_shape), jnp.float32, sharding=aval.sharding, manual_axis_type=aval.mat)
  else:
    result = jax.ShapeDtypeStruct(tuple(out_shape), jnp.float32)
  call = jax.ffi.ffi_call(target, result, vmap_method=_VMAP_METHOD)
  return call(a, b, strides=np.asarray(strides, np.int64), pad_lo=np.asarray([p[0] for p in pads], np.int64),
              pad_hi=np.asarray([p[1] for p in pads], np.int64), dilation=np.asarray(dilation, np.int64))


def _out_spatial(in_spatial: Sequence[int], kernel: Sequence[int], strides: Pair, pads: Pads,
                 dilation: Pair) -> tuple[int, int]:
  return tuple((n + lo + hi - (d * (k - 1) + 1)) // s + 1
               for n, k, s, (lo, hi), d in zip(in_spatial, kernel, strides, pads, dilation))


def forward(x: Array, kernel: Array, strides: Pair, pads: Pads, dilation: Pair = (1, 1)) -> Array:
  """`lax.conv_general_dilated(x, kernel, strides, pads, rhs_dilation=dilation)` in oneDNN.

  Args:
    x: float32 `[B, H, W, Cin]`.
    kernel: float32 `[kh, kw, Cin, Cout]`.
    strides: `(sh, sw)`, >= 1.
    pads: `((lo_h, hi_h), (lo_w, hi_w))`, each >= 0.
    dilation: kernel dilation `(dh, dw)`, >= 1.

  Returns:
    float32 `[B, Ho, Wo, Cout]`.
  """
  x, kernel = _match_vma(x, kernel)
  return _forward(x, kernel, tuple(strides), tuple(map(tuple, pads)), tuple(dilation))


def backward_data(dy: Array, kernel: Array, in_spatial: Pair, strides: Pair, pads: Pads,
                  dilation: Pair = (1, 1)) -> Array:
  """The input gradient of `forward` for the output gradient `dy` (`[B, Ho, Wo, Cout]`): `[B, *in_spatial, Cin]`."""
  dy, kernel = _match_vma(dy, kernel)
  return _backward_data(dy, kernel, tuple(in_spatial), tuple(strides), tuple(map(tuple, pads)), tuple(dilation))


def backward_weights(x: Array, dy: Array, kernel_spatial: Pair, strides: Pair, pads: Pads,
                     dilation: Pair = (1, 1)) -> Array:
  """The kernel gradient of `forward` at input `x` for the output gradient `dy`: `[*kernel_spatial, Cin, Cout]`."""
  x, dy = _match_vma(x, dy)
  return _backward_weights(x, dy, tuple(kernel_spatial), tuple(strides), tuple(map(tuple, pads)), tuple(dilation))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _forward(x: Array, kernel: Array, strides: Pair, pads: Pads, dilation: Pair) -> Array:
  out = _out_spatial(x.shape[1:3], kernel.shape[:2], strides, pads, dilation)
  return _call('dcgan_onednn_conv_forward', (x.shape[0], *out, kernel.shape[3]), x, kernel, strides, pads, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _backward_data(dy: Array, kernel: Array, in_spatial: Pair, strides: Pair, pads: Pads, dilation: Pair) -> Array:
  return _call('dcgan_onednn_conv_backward_data', (dy.shape[0], *in_spatial, kernel.shape[2]), dy, kernel, strides,
               pads, dilation)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _backward_weights(x: Array, dy: Array, kernel_spatial: Pair, strides: Pair, pads: Pads, dilation: Pair) -> Array:
  return _call('dcgan_onednn_conv_backward_weights', (*kernel_spatial, x.shape[3], dy.shape[3]), x, dy, strides,
               pads, dilation)


def _forward_fwd(x, kernel, strides, pads, dilation):
  return _forward(x, kernel, strides, pads, dilation), (x, kernel)


def _forward_bwd(strides, pads, dilation, residuals, g):
  x, kernel = residuals
  return (backward_data(g, kernel, x.shape[1:3], strides, pads, dilation),
          backward_weights(x, g, kernel.shape[:2], strides, pads, dilation))


def _backward_data_fwd(dy, kernel, in_spatial, strides, pads, dilation):
  return _backward_data(dy, kernel, in_spatial, strides, pads, dilation), (dy, kernel)


def _backward_data_bwd(in_spatial, strides, pads, dilation, residuals, c):
  dy, kernel = residuals
  return (forward(c, kernel, strides, pads, dilation),
          backward_weights(c, dy, kernel.shape[:2], strides, pads, dilation))


def _backward_weights_fwd(x, dy, kernel_spatial, strides, pads, dilation):
  return _backward_weights(x, dy, kernel_spatial, strides, pads, dilation), (x, dy)


def _backward_weights_bwd(kernel_spatial, strides, pads, dilation, residuals, c):
  x, dy = residuals
  return (backward_data(dy, c, x.shape[1:3], strides, pads, dilation), forward(x, c, strides, pads, dilation))


_forward.defvjp(_forward_fwd, _forward_bwd)
_backward_data.defvjp(_backward_data_fwd, _backward_data_bwd)
_backward_weights.defvjp(_backward_weights_fwd, _backward_weights_bwd)


def supports(pads: Pads, dtype) -> bool:
  """Whether the handlers take this convolution: float32 and every padding >= 0 (negative padding crops in XLA)."""
  return jnp.dtype(dtype) == jnp.float32 and all(lo >= 0 and hi >= 0 for lo, hi in pads)


def conv_transpose(x: Array, kernel: Array, strides: Pair, pads: Pads) -> Array:
  """`lax.conv_transpose(x, kernel, strides, pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` in oneDNN.

  The transposed convolution is the backward-data pass of the strided convolution with the flipped, in/out-swapped
  kernel and padding `k - 1 - pad` (see `dcgan_jax.ops.transposed`), so its input gradient is that convolution's
  forward and its kernel gradient its backward-weights.

  Args:
    x: float32 `[B, H, W, Cin]`.
    kernel: float32 `[kh, kw, Cin, Cout]`.
    strides: `(sh, sw)`.
    pads: padding of the lhs-dilated convolution, as `lax.conv_transpose` takes explicit pairs; each must satisfy
      `0 <= pad <= k - 1` (`transpose_supports`).

  Returns:
    float32 `[B, H', W', Cout]`, the shape of `lax.conv_transpose`'s result.
  """
  out = jax.eval_shape(lambda a, k: lax.conv_transpose(a, k, strides, pads, dimension_numbers=_DIMENSION_NUMBERS),
                       x, kernel).shape
  conv_kernel = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)  # [kh, kw, Cout, Cin]
  conv_pads = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel.shape[:2], pads))
  return backward_data(x, conv_kernel, out[1:3], strides, conv_pads, (1, 1))


def transpose_supports(kernel_spatial: Sequence[int], pads: Pads, dtype) -> bool:
  """Whether `conv_transpose` takes this transposed convolution: float32, `0 <= pad <= k - 1` on every side."""
  return supports(tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_spatial, pads)), dtype) and all(
      lo >= 0 and hi >= 0 for lo, hi in pads)
