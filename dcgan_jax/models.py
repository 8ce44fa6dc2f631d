"""Generator and discriminator modules, built from the config by `build`.

Modules hold architecture only; BatchNorm state lives in the explicit `batch_stats` collection, so a caller passes
`{'params': ..., 'batch_stats': ...}` and asks for `mutable=['batch_stats']` in training mode.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import layers

_OUTPUT_RANGES = {'tanh': (-1.0, 1.0), 'sigmoid': (0.0, 1.0)}


def activation(name: str, leaky_slope: float):
  """The hidden-layer nonlinearity `name` ('leaky_relu' with `leaky_slope`, or 'relu')."""
  if name == 'leaky_relu':
    return lambda x: nn.leaky_relu(x, leaky_slope)
  if name == 'relu':
    return nn.relu
  raise ValueError(f'unknown activation {name!r}; use leaky_relu or relu')


def output_activation(name: str):
  """The generator's last nonlinearity: 'tanh' (images in [-1, 1]) or 'sigmoid' (images in [0, 1])."""
  return {'tanh': jnp.tanh, 'sigmoid': jax.nn.sigmoid}[name]


def _batchnorm(train: bool, momentum: float, epsilon: float, axis_name: Optional[str],
               dtype: Any) -> nn.BatchNorm:
  # Statistics are reduced in float32 whatever `dtype` is (flax's force_float32_reductions), and kept in float32.
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                      axis_name=axis_name if train else None, dtype=dtype)


class DCGANGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, S, S, C] in the output activation's range, S = start_size * 2**len(features).

  A transposed conv 'VALID' turns z (as a 1x1 image) into start_size x start_size x features[0]; each further
  entry of `features` and the output layer is a stride-2 'SAME' transposed conv that doubles the size. Hidden layers
  have no bias (BatchNorm's offset replaces it), BatchNorm and the activation.
  """
  start_size: int
  features: Sequence[int]
  kernel_size: int
  channels: int
  leaky_slope: float
  bn_momentum: float
  bn_epsilon: float
  activation: str = 'leaky_relu'
  output_activation: str = 'tanh'
  bn_axis_name: Optional[str] = None  # Set to the device axis for BatchNorm statistics over the global batch.
  dtype: Any = jnp.float32  # Computation dtype (bfloat16 for mixed precision); parameters stay float32.

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    norm = lambda: _batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)
    act = activation(self.activation, self.leaky_slope)
    x = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    x = layers.ConvTranspose(self.features[0], (self.start_size,) * 2, padding='VALID', use_bias=False,
                             dtype=self.dtype)(x)
    x = act(norm()(x))
    k = (self.kernel_size,) * 2
    for width in self.features[1:]:
      x = layers.ConvTranspose(width, k, strides=(2, 2), padding='SAME', use_bias=False, dtype=self.dtype)(x)
      x = act(norm()(x))
    x = layers.ConvTranspose(self.channels, k, strides=(2, 2), padding='SAME', use_bias=True,
                             dtype=self.dtype)(x)
    return output_activation(self.output_activation)(x.astype(jnp.float32))


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
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    x = images
    k = (self.kernel_size,) * 2
    for i, width in enumerate(self.features):
      use_bn = i > 0 or self.first_batchnorm
      x = nn.Conv(width, k, strides=(2, 2), padding='SAME', use_bias=not use_bn, dtype=self.dtype)(x)
      if use_bn:
        x = _batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
      x = nn.leaky_relu(x, self.leaky_slope)
    x = nn.Conv(1, x.shape[1:3], padding='VALID', dtype=self.dtype)(x)
    return x.reshape(x.shape[0]).astype(jnp.float32)


class MLPGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, S, S, C]: Dense layers of `features` (each Dense, activation, then
  BatchNorm if `batchnorm`), a Dense to S*S*C, the output activation, reshaped."""
  features: Sequence[int]
  image_shape: tuple[int, int, int]
  leaky_slope: float
  bn_momentum: float
  bn_epsilon: float
  activation: str = 'leaky_relu'
  output_activation: str = 'sigmoid'
  batchnorm: bool = True
  bn_axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    act = activation(self.activation, self.leaky_slope)
    x = z
    for width in self.features:
      x = act(nn.Dense(width, dtype=self.dtype)(x))
      if self.batchnorm:
        x = _batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
    x = nn.Dense(int(np.prod(self.image_shape)), dtype=self.dtype)(x).astype(jnp.float32)
    return output_activation(self.output_activation)(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
  """images float32 [B, H, W, C] -> logits float32 [B]: flatten, Dense+activation per `features`, Dense to 1."""
  features: Sequence[int]
  leaky_slope: float
  activation: str = 'leaky_relu'
  bn_axis_name: Optional[str] = None  # Unused (no BatchNorm); present so every discriminator clones alike.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, train: bool) -> jax.Array:
    del train
    act = activation(self.activation, self.leaky_slope)
    x = images.reshape(images.shape[0], -1)
    for width in self.features:
      x = act(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(1, dtype=self.dtype)(x).reshape(images.shape[0]).astype(jnp.float32)


def build(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """Returns `(generator, discriminator)` for `config.model.name`, sized by `config.model` and `config.data`."""
  m = config.model
  dtype = jnp.dtype(config.dtype)
  if m.name == 'dcgan':
    g = DCGANGenerator(
        start_size=m.g_start_size, features=tuple(m.g_features), kernel_size=m.g_kernel_size,
        channels=config.data.channels, leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum,
        bn_epsilon=m.bn_epsilon, activation=m.g_activation, output_activation=m.output_activation, dtype=dtype)
    d = DCGANDiscriminator(
        features=tuple(m.d_features), kernel_size=m.d_kernel_size, leaky_slope=m.leaky_slope,
        bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, first_batchnorm=m.d_first_batchnorm, dtype=dtype)
    return g, d
  if m.name == 'mlp':
    size = config.data.image_size
    g = MLPGenerator(
        features=tuple(m.g_features), image_shape=(size, size, config.data.channels),
        leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, activation=m.g_activation,
        output_activation=m.output_activation, batchnorm=m.g_batchnorm, dtype=dtype)
    d = MLPDiscriminator(features=tuple(m.d_features), leaky_slope=m.leaky_slope, activation=m.d_activation,
                         dtype=dtype)
    return g, d
  raise ValueError(f'unknown model.name {m.name!r}')


def output_size(config: ml_collections.ConfigDict) -> int:
  """The image size the configured generator produces."""
  m = config.model
  if m.name == 'dcgan':
    return m.g_start_size * 2 ** len(m.g_features)
  if m.name == 'mlp':
    return config.data.image_size
  raise ValueError(f'unknown model.name {m.name!r}')


def data_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """The range of the generator's output, which the real images are scaled to."""
  return _OUTPUT_RANGES[config.model.output_activation]


def count_params(tree: Any) -> int:
  """Number of scalar values in a pytree of arrays."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
