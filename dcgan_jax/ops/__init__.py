"""Custom layers that keep a GAN step on XLA:CPU's fast paths; GPU/TPU get the stock ops.

XLA:CPU runs most 2-D convolutions at close to its matmul rate, but falls to a path one to two orders of magnitude
slower for some forms that GANs hit every step. These are drop-in replacements for the flax ops involved: they keep
flax's parameter names, shapes and initialisers, so a params dict of either works in the other, and each equals the
stock op in value and gradients (to float rounding; `max_pool` exactly). `dcgan_jax.backend.cpu_workarounds()`
decides which path runs.

* `transposed`: `ConvTranspose`, `conv_transpose`, `is_dense_transpose` (custom VJP for the kernel gradient).
* `convolution`: `Conv`, `conv`, `conv_im2col`, `uses_im2col` (im2col where the kernel exceeds the input or output).
* `pool`: `max_pool` (elementwise backward instead of `select_and_scatter`).
"""

from dcgan_jax.ops.convolution import Conv
from dcgan_jax.ops.convolution import conv
from dcgan_jax.ops.convolution import conv_im2col
from dcgan_jax.ops.convolution import uses_im2col
from dcgan_jax.ops.transposed import conv_transpose
from dcgan_jax.ops.transposed import ConvTranspose
from dcgan_jax.ops.transposed import is_dense_transpose
from dcgan_jax.ops.pool import max_pool

__all__ = ['Conv', 'ConvTranspose', 'conv', 'conv_im2col', 'conv_transpose', 'is_dense_transpose', 'max_pool',
           'uses_im2col']
