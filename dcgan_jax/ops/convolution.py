"""Convolutions that stay on XLA:CPU's fast paths: `Conv`, `conv`, `conv_im2col`, `uses_im2col`.

`Conv` / `conv` (for `flax.linen.Conv`). XLA:CPU's slow path also catches
ordinary convolutions whose kernel is larger than a spatial side of the input
(forward, and the stride-1 input gradient, which is the same form) or of the
output (the input gradient of a strided convolution, an lhs-dilated
convolution of the small output gradient): the 5x5 'SAME' conv on the 4x4x256
-> 4x4x512 block of the EMNIST-letters discriminator takes 4.4 s forward and
2.6 s for the input gradient at batch 128, about 7 GFLOP/s against 400 for its
weight gradient. For those shapes `conv` uses im2col: the kh*kw shifted
(strided) windows of the padded input side by side, times the kernel reshaped
to a matrix, one matmul. Autodiff of that is itself the fast backward pass
(the patch matrix transposed times the output gradient, and the output
gradient times the kernel matrix summed back onto the input by pads and
adds), so it needs no custom VJP. For every other shape XLA's convolution is
as fast or faster (the patch matrix is kh*kw/(sh*sw) times the input), so
`conv` keeps it; `uses_im2col` is the rule, measured on both sides of its
boundary by `benchmarks/conv_layers.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dcgan_jax import backend
from dcgan_jax.ops.onednn import conv as onednn_conv
from dcgan_jax.ops.onednn import policy as onednn_policy

Array = jax.Array
Padding = str | Sequence[tuple[int, int]]
Pads = tuple[tuple[int, int], ...]

_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
_NUM_SPATIAL = 2


def _conv_pads(in_spatial: Sequence[int], kernel_size: Sequence[int], strides: Sequence[int],
               padding: Padding) -> Pads:
  """Explicit `(low, high)` input padding, resolved as `lax.conv_general_dilated` does."""
  if isinstance(padding, str):
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high) pairs, got {padding!r}")
    return tuple(tuple(p) for p in lax.padtype_to_pads(in_spatial, kernel_size, strides, padding.upper()))
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != len(kernel_size):
    raise ValueError(f'need {len(kernel_size)} (low, high) padding pairs, got {padding!r}')
  return pads


def _conv_out_size(size: int, k: int, s: int, pad: tuple[int, int]) -> int:
  return (size + pad[0] + pad[1] - k) // s + 1


def uses_im2col(in_spatial: Sequence[int], kernel_size: Sequence[int], strides: Sequence[int] = (1, 1),
                padding: Padding = 'SAME') -> bool:
  """Whether `conv` computes this convolution by im2col + matmul rather than with XLA's convolution.

  The rule: im2col when, along some spatial axis, the kernel is larger than the input or than the output. Those
  are the shapes that put XLA:CPU's forward (kernel > input) or input-gradient (kernel > output, the lhs-dilated
  convolution of the output gradient) on its slow path; see the module docstring and `benchmarks/conv_layers.py`.

  Args:
    in_spatial: `(H, W)` of the input.
    kernel_size: `(kh, kw)`.
    strides: `(sh, sw)`.
    padding: as for `conv`.

  Returns:
    True for im2col.
  """
  pads = _conv_pads(in_spatial, kernel_size, strides, padding)
  for size, k, s, pad in zip(in_spatial, kernel_size, strides, pads):
    if k > size or k > _conv_out_size(size, k, s, pad):
      return True
  return False


def _patches(x: Array, kernel_size: Sequence[int], strides: Sequence[int], pads: Pads) -> Array:
  """The im2col patch matrix of `x` for a convolution, tap-major and channel-minor.

  Args:
    x: `[B, H, W, C]`.
    kernel_size: `(kh, kw)`.
    strides: `(sh, sw)`.
    pads: explicit `(low, high)` pairs (negative values crop).

  Returns:
    `[B, Ho, Wo, kh * kw * C]`: feature `(i * kw + j) * C + c` of output pixel `(o, p)` is padded input pixel
    `(o * sh + i, p * sw + j)`, channel `c`; the row order of an HWIO kernel reshaped to `[kh * kw * C, Cout]`.
  """
  (kh, kw), (sh, sw) = kernel_size, strides
  batch, _, _, channels = x.shape
  xp = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  ho = (xp.shape[1] - kh) // sh + 1
  wo = (xp.shape[2] - kw) // sw + 1
  if (kh, kw) == xp.shape[1:3]:
    return xp.reshape(batch, 1, 1, kh * kw * channels)  # One window: the patch matrix is the input itself.
  # One strided slice per kernel tap; autodiff turns each into an (interior-)pad of its gradient, so col2im is a
  # sum of kh*kw padded arrays, with no scatter.
  taps = [lax.slice(xp, (0, i, j, 0), (batch, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, channels),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return jnp.concatenate(taps, axis=-1)


def conv_im2col(x: Array, kernel: Array, strides: Sequence[int] = (1, 1), padding: Padding = 'SAME') -> Array:
  """2-D convolution as one matmul of the im2col patch matrix with the reshaped kernel.

  Equal in value and shape to `lax.conv_general_dilated(x, kernel, strides, padding,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))` (to float rounding: the sums run in a different order), and so are
  its gradients, which autodiff derives as two more matmuls and a col2im of pads and adds.

  Args:
    x: `[B, H, W, Cin]`.
    kernel: `[kh, kw, Cin, Cout]`.
    strides: `(sh, sw)`.
    padding: 'SAME', 'VALID' or two explicit `(low, high)` pairs, as in lax.

  Returns:
    `[B, Ho, Wo, Cout]`.
  """
  kh, kw, cin, cout = kernel.shape
  strides = tuple(int(s) for s in strides)
  pads = _conv_pads(x.shape[1:3], (kh, kw), strides, padding)
  dtype = jnp.result_type(x, kernel)
  patches = _patches(x.astype(dtype), (kh, kw), strides, pads)
  y = lax.dot_general(patches, kernel.astype(dtype).reshape(kh * kw * cin, cout),
                      (((patches.ndim - 1,), (0,)), ((), ())))
  return y


def conv(x: Array, kernel: Array, strides: Sequence[int] = (1, 1), padding: Padding = 'SAME',
         im2col: bool | None = None) -> Array:
  """2-D convolution (NHWC input, HWIO kernel) by whichever of XLA's convolution and im2col is fast here.

  Equal in value, shape and gradients to `lax.conv_general_dilated(x, kernel, strides, padding,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`, to float rounding.

  Args:
    x: `[B, H, W, Cin]`.
    kernel: `[kh, kw, Cin, Cout]`.
    strides: `(sh, sw)`.
    padding: 'SAME', 'VALID' or two explicit `(low, high)` pairs, as in lax.
    im2col: force im2col (True) or XLA's convolution (False); None: on the CPU path (`backend.cpu_workarounds()`)
      oneDNN's convolution where `config.cpu_conv` selects it (`dcgan_jax.ops.onednn.policy.active()`, float32,
      padding >= 0), else `uses_im2col`; XLA's convolution on GPU/TPU.

  Returns:
    `[B, Ho, Wo, Cout]`, as lax.
  """
  if x.ndim != _NUM_SPATIAL + 2 or kernel.ndim != _NUM_SPATIAL + 2:
    raise ValueError(f'expected x [B, H, W, C] and kernel [kh, kw, Cin, Cout], got shapes {x.shape} and '
                     f'{kernel.shape}')
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'x has {x.shape[-1]} channels but kernel expects {kernel.shape[2]}')
  strides = tuple(int(s) for s in strides)
  if len(strides) != _NUM_SPATIAL:
    raise ValueError(f'need {_NUM_SPATIAL} strides, got {strides}')
  pads = _conv_pads(x.shape[1:3], kernel.shape[:2], strides, padding)
  dtype = jnp.result_type(x, kernel)
  if im2col is None and backend.cpu_workarounds():
    if onednn_conv.supports(pads, dtype) and onednn_policy.active():  # config.cpu_conv: oneDNN's convolution.
      return onednn_conv.forward(x.astype(dtype), kernel.astype(dtype), strides, pads, (1, 1))
    im2col = uses_im2col(x.shape[1:3], kernel.shape[:2], strides, padding)
  if im2col:
    return conv_im2col(x, kernel, strides, padding)
  return lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), strides, pads,
                                  dimension_numbers=_DIMENSION_NUMBERS)


class Conv(nn.Module):
  """Drop-in for `flax.linen.Conv` (2-D, no dilation or feature groups) that avoids XLA:CPU's slow shapes.

  Same parameter names, shapes and initialisers as flax's, so a params dict of either module works in the other;
  the convolution is `conv` (im2col for the shapes `uses_im2col` names, XLA's convolution otherwise).

  Attributes:
    features: number of output channels.
    kernel_size: `(kh, kw)`.
    strides: `(sh, sw)`.
    padding: 'SAME', 'VALID' or two `(low, high)` pairs, as in lax.
    use_bias: whether to add a learned bias.
    dtype: computation dtype; None infers it from inputs and params.
    param_dtype: dtype of the parameters.
    kernel_init: initializer of the `[kh, kw, Cin, features]` kernel.
    bias_init: initializer of the `[features]` bias.
    im2col: force im2col (True) or XLA's convolution (False); None (default) applies `uses_im2col`.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: Padding = 'SAME'
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  im2col: bool | None = None

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Applies the convolution.

    Args:
      inputs: `[*batch, H, W, Cin]`; any number of leading batch dimensions (including none), as in flax.

    Returns:
      `[*batch, Ho, Wo, features]`.
    """
    kernel_size = tuple(self.kernel_size)
    if len(kernel_size) != _NUM_SPATIAL:
      raise ValueError(f'kernel_size must have {_NUM_SPATIAL} entries, got {self.kernel_size}')
    batch_shape = inputs.shape[:-3]
    inputs = jnp.reshape(inputs, (-1,) + inputs.shape[-3:])
    kernel = self.param('kernel', self.kernel_init, kernel_size + (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)
    y = conv(inputs, kernel, self.strides, self.padding, im2col=self.im2col)
    if bias is not None:
      y = y + bias
    return jnp.reshape(y, batch_shape + y.shape[1:])
