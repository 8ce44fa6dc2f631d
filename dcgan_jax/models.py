"""Generator and discriminator modules, built from the config by `build`.

Modules hold architecture only; BatchNorm state lives in the explicit `batch_stats` collection, so a caller passes
`{'params': ..., 'batch_stats': ...}` and asks for `mutable=['batch_stats']` in training mode.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dcgan_jax import layers


class DCGANGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, S, S, C] in [-1, 1] (tanh), S = start_size * 2**len(features).

  A transposed conv 'VALID' turns z (as a 1x1 image) into start_size x start_size x features[0]; each further
  entry of `features` and the output layer is a stride-2 'SAME' transposed conv that doubles the size. Hidden layers
  have no bias (BatchNorm's offset replaces it), BatchNorm and LeakyReLU.
  """
  start_size: int
  features: Sequence[int]
  kernel_size: int
  channels: int
  leaky_slope: float
  bn_momentum: float
  bn_epsilon: float
  bn_axis_name: Optional[str] = None  # Set to the device axis for BatchNorm statistics over the global batch.

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    norm = lambda: nn.BatchNorm(
        use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
        axis_name=self.bn_axis_name if train else None)
    x = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    x = layers.ConvTranspose(self.features[0], (self.start_size,) * 2, padding='VALID', use_bias=False)(x)
    x = nn.leaky_relu(norm()(x), self.leaky_slope)
    k = (self.kernel_size,) * 2
    for width in self.features[1:]:
      x = layers.ConvTranspose(width, k, strides=(2, 2), padding='SAME', use_bias=False)(x)
      x = nn.leaky_relu(norm()(x), self.leaky_slope)
    x = layers.ConvTranspose(self.channels, k, strides=(2, 2), padding='SAME', use_bias=True)(x)
    return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
  """images float32 [B, S, S, C] -> logits float32 [B].

  One stride-2 'SAME' conv per entry of `features` (BatchNorm except, optionally, after the first; LeakyReLU), then
  a 'VALID' conv as large as what is left, to one logit.
  """
  features: Sequence[int]
  kernel_size: int
  leaky_slope: float
  bn_momentum: float
  bn_epsilon: float
  first_batchnorm: bool = True
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = images
    k = (self.kernel_size,) * 2
    for i, width in enumerate(self.features):
      use_bn = i > 0 or self.first_batchnorm
      x = nn.Conv(width, k, strides=(2, 2), padding='SAME', use_bias=not use_bn)(x)
      if use_bn:
        x = nn.BatchNorm(
            use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
            axis_name=self.bn_axis_name if train else None)(x)
      x = nn.leaky_relu(x, self.leaky_slope)
    x = nn.Conv(1, x.shape[1:3], padding='VALID')(x)
    return x.reshape(x.shape[0])


def build(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """Returns `(generator, discriminator)` for `config.model.name`, sized by `config.model` and `config.data`."""
  m = config.model
  if m.name == 'dcgan':
    g = DCGANGenerator(
        start_size=m.g_start_size, features=tuple(m.g_features), kernel_size=m.g_kernel_size,
        channels=config.data.channels, leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum,
        bn_epsilon=m.bn_epsilon)
    d = DCGANDiscriminator(
        features=tuple(m.d_features), kernel_size=m.d_kernel_size, leaky_slope=m.leaky_slope,
        bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, first_batchnorm=m.d_first_batchnorm)
    return g, d
  raise ValueError(f'unknown model.name {m.name!r}')


def output_size(config: ml_collections.ConfigDict) -> int:
  """The image size the configured generator produces."""
  m = config.model
  if m.name == 'dcgan':
    return m.g_start_size * 2 ** len(m.g_features)
  raise ValueError(f'unknown model.name {m.name!r}')


def data_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """The range of the generator's output, which the real images are scaled to."""
  del config  # Every family so far ends in tanh.
  return (-1.0, 1.0)


def count_params(tree: Any) -> int:
  """Number of scalar values in a pytree of arrays."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
