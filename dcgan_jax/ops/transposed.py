"""The transposed convolution with a fast backward pass on XLA:CPU: `ConvTranspose`, `conv_transpose`.

`ConvTranspose` / `conv_transpose` (for `flax.linen.ConvTranspose`,
`transpose_kernel=False`). Autodiff of `jax.lax.conv_transpose` computes the
kernel gradient as a convolution with `lhs_dilation=strides`, which XLA:CPU runs
at a tiny fraction of its normal throughput (seconds per step for a DCGAN
generator layer at batch 128; see jax-ml/jax issues 23783 and 31662). The same
two gradients can be written with ordinary window-strided convolutions, which
XLA:CPU runs at full speed:

* the input gradient of a transposed convolution is the forward strided
  convolution of the output gradient with the spatially flipped,
  in/out-swapped kernel;
* the kernel gradient is the weight gradient of that same strided
  convolution, with the input `x` as the cotangent, mapped back to the
  transposed-convolution kernel layout.

`conv_transpose` implements this with `jax.custom_vjp`. Its forward pass stays
`lax.conv_transpose`: on XLA:CPU its lhs-dilated forward convolution is as fast
as an explicit zero-interleave followed by a stride-1 convolution (measured:
0.062 s vs 0.060 s for the 7x7x256 -> 14x14x128 layer at batch 128), so only the
backward pass is rewritten. Every padding (including negative or over-wide
explicit pairs) has an exact strided-convolution counterpart; the unsupported
configurations (kernel dilation, feature groups, `transpose_kernel`) are simply
not exposed. One shape is a plain matmul instead (`is_dense_transpose`): a 1x1
input whose output is the kernel's footprint, a DCGAN generator's first layer,
where the convolution sits on the kernel-larger-than-input slow path (see
`dcgan_jax.ops.convolution`) (38 ms
against 2.4 ms for PyTorch on the MNIST generator's 1x1x100 -> 7x7x256 layer).
"""

from __future__ import annotations

import functools
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


def _string_pads(k: int, s: int, padding: str) -> tuple[int, int]:
  """Padding of the lhs-dilated convolution that `lax.conv_transpose` uses.

  'SAME' and 'VALID' name the padding of the forward convolution that this
  transposed convolution is the transpose of; lax translates them into the
  padding of the zero-interleaved input. This mirrors that translation so the
  backward pass can be derived from the same numbers as the forward pass.

  Args:
    k: Kernel size along one spatial dimension.
    s: Stride along that dimension.
    padding: 'SAME' or 'VALID'.

  Returns:
    `(low, high)` padding of the dilated input.
  """
  if padding == 'SAME':
    total = k + s - 2
    low = k - 1 if s > k - 1 else -(-total // 2)
  elif padding == 'VALID':
    total = k + s - 2 + max(k - s, 0)
    low = k - 1
  else:
    raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high) pairs, "
                     f'got {padding!r}')
  return low, total - low


def _resolve_pads(kernel_size: Sequence[int], strides: Sequence[int],
                  padding: Padding) -> Pads:
  """Turns `padding` into explicit pads of the lhs-dilated convolution.

  Explicit pairs are taken as lax does with its default
  `use_consistent_padding=False`: as the padding of the dilated input.

  Args:
    kernel_size: `(kh, kw)`.
    strides: `(sh, sw)`.
    padding: 'SAME', 'VALID', or a sequence of two `(low, high)` pairs.

  Returns:
    Two `(low, high)` pairs of Python ints.
  """
  if isinstance(padding, str):
    name = padding.upper()
    return tuple(_string_pads(k, s, name) for k, s in zip(kernel_size, strides))
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != len(kernel_size):
    raise ValueError(f'need {len(kernel_size)} (low, high) padding pairs, '
                     f'got {padding!r}')
  return pads


def _flip_swap(kernel: Array) -> Array:
  """Flips both spatial axes and swaps the two channel axes of an HWIO kernel.

  This is its own inverse, so it maps the ConvTranspose kernel to the kernel of
  the equivalent strided convolution and maps that convolution's weight
  gradient back.

  Args:
    kernel: `[kh, kw, A, B]`.

  Returns:
    `[kh, kw, B, A]`.
  """
  return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


def _strided_conv_pads(kernel_size: Sequence[int], pads: Pads) -> Pads:
  """Padding of the strided convolution that is the transpose of the forward.

  Output position `o` of the transposed convolution reads dilated-input
  position `o + t - low` through kernel tap `t`, so input pixel `i` reaches
  outputs `i * s + low - t`. Re-indexing the taps as `t' = k - 1 - t` gives a
  window starting at `i * s - (k - 1 - low)`: a strided convolution with low
  padding `k - 1 - low`; the same argument from the other edge gives high
  padding `k - 1 - high`. Either may be negative (the forward padded by more
  than `k - 1`); XLA treats negative convolution padding as cropping, which is
  exactly what is needed.

  Args:
    kernel_size: `(kh, kw)`.
    pads: padding of the lhs-dilated forward convolution.

  Returns:
    Two `(low, high)` pairs for the strided convolution of the output gradient.
  """
  return tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(kernel_size, pads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_transpose(x: Array, kernel: Array, strides: tuple[int, ...],
                    pads: Pads) -> Array:
  return lax.conv_transpose(x, kernel, strides, pads,
                            dimension_numbers=_DIMENSION_NUMBERS)


def _conv_transpose_fwd(x: Array, kernel: Array, strides: tuple[int, ...],
                        pads: Pads) -> tuple[Array, tuple[Array, Array]]:
  return _conv_transpose(x, kernel, strides, pads), (x, kernel)


def _conv_transpose_bwd(strides: tuple[int, ...], pads: Pads,
                        residuals: tuple[Array, Array],
                        g: Array) -> tuple[Array, Array]:
  x, kernel = residuals
  g = g.astype(x.dtype)
  conv_kernel = _flip_swap(kernel)  # [kh, kw, Cout, Cin]
  conv_pads = _strided_conv_pads(kernel.shape[:2], pads)

  def strided_conv(k: Array) -> Array:
    return lax.conv_general_dilated(g, k, window_strides=strides,
                                    padding=conv_pads,
                                    dimension_numbers=_DIMENSION_NUMBERS)

  dx = strided_conv(conv_kernel)
  # `strided_conv` is linear in its kernel, so its transpose evaluated at `x`
  # is the kernel gradient; JAX lowers it to a rhs-dilated (not lhs-dilated)
  # convolution, the form XLA:CPU runs fast. `linear_transpose` avoids
  # tracing a throwaway primal the way `jax.vjp` would.
  (d_conv_kernel,) = jax.linear_transpose(strided_conv, conv_kernel)(x)
  # The strided convolution produces exactly x's spatial size for any padding
  # (see `_strided_conv_pads`), so no shape fix-up is needed.
  dkernel = _flip_swap(d_conv_kernel)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def is_dense_transpose(in_spatial: Sequence[int], kernel_size: Sequence[int], pads: Pads) -> bool:
  """Whether `conv_transpose` computes this transposed convolution as one matmul.

  That is when the input is 1x1 and the output is exactly the kernel's footprint (a DCGAN generator's first
  layer, 'VALID'): then `y[b, i, j] = x[b] @ kernel[kh - 1 - i, kw - 1 - j]`, a dense layer.

  Args:
    in_spatial: `(H, W)` of the input.
    kernel_size: `(kh, kw)`.
    pads: padding of the lhs-dilated convolution (see `_resolve_pads`).
  """
  return tuple(in_spatial) == (1, 1) and tuple(pads) == tuple((k - 1, k - 1) for k in kernel_size)


def conv_transpose(x: Array, kernel: Array, strides: Sequence[int] = (1, 1),
                   padding: Padding = 'SAME') -> Array:
  """2-D transposed convolution with an XLA:CPU-friendly backward pass.

  Equal in value and shape to `lax.conv_transpose(x, kernel, strides, padding,
  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))`, i.e. to `flax.linen.
  ConvTranspose` with `transpose_kernel=False`; its gradients use only
  window-strided and rhs-dilated convolutions (never `lhs_dilation`). That is
  the CPU path (`backend.cpu_workarounds()`); on GPU/TPU it is
  `lax.conv_transpose` itself. Where `config.cpu_conv` selects oneDNN
  (`dcgan_jax.ops.onednn.policy.active()`), the CPU path's forward and both
  gradients are oneDNN's convolution passes instead.

  If `x` and `kernel` differ in dtype both are promoted for the computation;
  each gradient comes back in its own argument's dtype.

  Args:
    x: `[B, H, W, Cin]` input.
    kernel: `[kh, kw, Cin, Cout]` kernel, the layout of
      `flax.linen.ConvTranspose` with `transpose_kernel=False`.
    strides: `(sh, sw)` upsampling factors.
    padding: 'SAME', 'VALID' (the padding of the forward convolution this is
      the transpose of, as in lax), or two explicit `(low, high)` pairs,
      which lax applies to the zero-interleaved input.

  Returns:
    `[B, H', W', Cout]`; with 'SAME', `H' = H * sh`; with 'VALID',
    `H' = H * sh + max(kh - sh, 0)`.
  """
  if x.ndim != _NUM_SPATIAL + 2 or kernel.ndim != _NUM_SPATIAL + 2:
    raise ValueError(f'expected x [B, H, W, C] and kernel [kh, kw, Cin, Cout], '
                     f'got shapes {x.shape} and {kernel.shape}')
  if x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'x has {x.shape[-1]} channels but kernel expects '
                     f'{kernel.shape[2]}')
  strides = tuple(int(s) for s in strides)
  if len(strides) != _NUM_SPATIAL:
    raise ValueError(f'need {_NUM_SPATIAL} strides, got {strides}')
  dtype = jnp.result_type(x, kernel)
  if not backend.cpu_workarounds():  # GPU/TPU: the standard op and its autodiff.
    return lax.conv_transpose(x.astype(dtype), kernel.astype(dtype), strides, padding,
                              dimension_numbers=_DIMENSION_NUMBERS)
  pads = _resolve_pads(kernel.shape[:2], strides, padding)
  kh, kw, cin, cout = kernel.shape
  if is_dense_transpose(x.shape[1:3], kernel.shape[:2], pads):
    # XLA:CPU's convolution takes ~15x the time of this matmul here (its kernel-larger-than-input path); the
    # matmul's autodiff is two more matmuls.
    # Output pixel (i, j) reads the one input pixel through tap (kh-1-i, kw-1-j): the kernel flipped.
    y = jnp.dot(x.astype(dtype).reshape(-1, cin),
                jnp.transpose(kernel.astype(dtype)[::-1, ::-1], (2, 0, 1, 3)).reshape(cin, kh * kw * cout))
    return y.reshape(-1, kh, kw, cout)
  if onednn_conv.transpose_supports(kernel.shape[:2], pads, dtype) and onednn_policy.active():
    # config.cpu_conv: forward and both gradients in oneDNN (the strided convolution's three passes).
    return onednn_conv.conv_transpose(x.astype(dtype), kernel.astype(dtype), strides, pads)
  # Casting outside the custom_vjp lets autodiff of the casts return each
  # gradient in its argument's own dtype.
  return _conv_transpose(x.astype(dtype), kernel.astype(dtype), strides, pads)


class ConvTranspose(nn.Module):
  """Drop-in for `flax.linen.ConvTranspose` (2-D, `transpose_kernel=False`).

  Same parameter names, shapes and initialisers, so a params dict of either
  module works in the other; only the backward pass differs (see
  `conv_transpose`).

  Attributes:
    features: number of output channels.
    kernel_size: `(kh, kw)`.
    strides: `(sh, sw)` upsampling factors.
    padding: 'SAME', 'VALID' or two `(low, high)` pairs, as in lax.
    use_bias: whether to add a learned bias.
    dtype: computation dtype; None infers it from inputs and params.
    param_dtype: dtype of the parameters.
    kernel_init: initializer of the `[kh, kw, Cin, features]` kernel.
    bias_init: initializer of the `[features]` bias.
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

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    """Applies the transposed convolution.

    Args:
      inputs: `[*batch, H, W, Cin]`; any number of leading batch dimensions
        (including none), as in flax.

    Returns:
      `[*batch, H', W', features]`.
    """
    kernel_size = tuple(self.kernel_size)
    if len(kernel_size) != _NUM_SPATIAL:
      raise ValueError(f'kernel_size must have {_NUM_SPATIAL} entries, '
                       f'got {self.kernel_size}')
    batch_shape = inputs.shape[:-3]
    # The custom op takes exactly one batch axis; flax flattens the same way.
    inputs = jnp.reshape(inputs, (-1,) + inputs.shape[-3:])

    kernel = self.param('kernel', self.kernel_init,
                        kernel_size + (inputs.shape[-1], self.features),
                        self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,),
                       self.param_dtype) if self.use_bias else None)
    inputs, kernel, bias = nn.dtypes.promote_dtype(inputs, kernel, bias,
                                                   dtype=self.dtype)
    y = conv_transpose(inputs, kernel, self.strides, self.padding)
    if bias is not None:
      y = y + bias
    return jnp.reshape(y, batch_shape + y.shape[1:])

