"""The upsample family: a Dense projection, then nearest-neighbour upsampling and stride-1 transposed convs.

This is the layout of the Keras GANs that grow images with `UpSampling2D` instead of strided transposed
convolutions (e.g. the EMNIST-letters GAN, `configs/emnist_letters.py`). Its discriminator is the conv family's
`DCGANDiscriminator` (strided convs without BatchNorm, dropout, per-block strides).

Sizes. `features[0]` is the width of the Dense projection at `start x start`; each later entry, then the output
layer, is a stride-1 'SAME' transposed conv. The first `n` of those convs are preceded by an x2 upsampling, with
`n = log2(image_size / start)`; so `image_size / start` must be a power of two no larger than `2**len(features)`.
`model.generator.start_size = 0` picks the smallest start >= 3 that works (28 -> 7 with two upsamplings).
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcgan_jax import errors
from dcgan_jax import ops
from dcgan_jax.models import common

Array = jax.Array
_MIN_AUTO_START = 3


def generator_sizes(image_size: int, start_size: int, num_convs: int) -> tuple[int, int]:
  """The upsample generator's `(start, num_upsamplings)` for `image_size` (see the module docstring).

  Args:
    image_size: `data.image_size`, > 0.
    start_size: `model.generator.start_size`; 0 picks the smallest start >= 3 (or `image_size` itself if smaller).
    num_convs: transposed convs in the generator (`len(model.generator.features)`), each may be preceded by an
      upsampling.

  Returns:
    `(start, n)` with `start * 2**n == image_size` and `n <= num_convs`.

  Raises:
    errors.ConfigError: `start_size > 0` cannot reach `image_size` by doubling at most `num_convs` times.
  """
  if start_size <= 0:
    n = 0
    while (n < num_convs and image_size % 2 ** (n + 1) == 0
           and image_size // 2 ** (n + 1) >= _MIN_AUTO_START):
      n += 1
    return image_size // 2 ** n, n
  ratio, rest = divmod(image_size, start_size)
  n = ratio.bit_length() - 1
  if rest or ratio != 2 ** n or n > num_convs:
    raise errors.ConfigError(
        f'config.data.image_size={image_size}: the upsample generator doubles config.model.generator.start_size='
        f'{start_size} at most {num_convs} times (len(features)) and cannot make {image_size}; set start_size '
        f'to {image_size} / 2**k (k <= {num_convs}) or 0 (automatic)')
  return start_size, n


class UpsampleGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, start * 2**upsamplings, same, C] in the output activation's range.

  Dense(start*start*features[0]) -> activation -> BatchNorm (over the flat vector, as Keras before `Reshape`) ->
  reshape -> dropout -> per later width: [x2 nearest upsampling] -> transposed conv (stride 1, 'SAME', with bias,
  as Keras's default) -> activation -> BatchNorm -> output: [upsampling] -> transposed conv to C -> output
  activation. The first `upsamplings` convs get the upsampling. With `num_classes` > 0, z is first concatenated
  with a label embedding (`common.embed_label`).
  """
  start_size: int  # Size of the Dense projection; in a config 0 picks the smallest start >= 3 (see above).
  upsamplings: int  # How many convs get an x2 upsampling (the builder derives it from data.image_size).
  features: Sequence[int]  # Widths: the projection's, then one per stride-1 transposed conv.
  kernel_size: int  # Kernel of the transposed convs.
  channels: int  # Output channels (the builder passes data.channels).
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  bn_momentum: float = 0.99  # BatchNorm running-average momentum (Keras's default).
  bn_epsilon: float = 1e-3  # BatchNorm epsilon (Keras's default).
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  output_activation: str = 'tanh'  # 'tanh' (images in [-1, 1]) or 'sigmoid' ([0, 1]).
  dropout: float = 0.0  # Dropout rate after the projection; 0 means none.
  num_classes: int = 0  # > 0: conditional on labels 0..num_classes-1 (the builder passes config.num_classes).
  bn_axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: Array, train: bool, deterministic: Optional[bool] = None,
               labels: Optional[Array] = None) -> Array:
    norm = lambda: common.batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)
    act = common.activation(self.activation, self.leaky_slope)
    z = common.embed_label(z, labels, self.num_classes, self.dtype)
    s = self.start_size
    x = norm()(act(nn.Dense(s * s * self.features[0], dtype=self.dtype)(z)))
    x = common.dropout(x.reshape(z.shape[0], s, s, self.features[0]), self.dropout, train, deterministic)
    k = (self.kernel_size,) * 2
    widths = tuple(self.features[1:]) + (self.channels,)
    for i, width in enumerate(widths):
      if i < self.upsamplings:
        x = common.upsample_nearest(x)
      x = ops.ConvTranspose(width, k, padding='SAME', dtype=self.dtype)(x)
      if i < len(widths) - 1:
        x = norm()(act(x))
    return common.output_activation(self.output_activation)(x.astype(jnp.float32))
