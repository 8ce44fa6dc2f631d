"""Generator and discriminator modules, built from the config by `build`.

Families (`config.model.name`), one config-driven builder each:

* `dcgan` (`dcgan.py`): strided transposed convs up from a small start size; strided-conv (or conv + max-pool)
  discriminator. Any image size (see `dcgan.generator_sizes`).
* `upsample` (`upsample.py`): Dense projection, nearest upsampling + stride-1 transposed convs; the same
  discriminator as `dcgan`.
* `mlp` (`mlp.py`): Dense layers.

Modules hold architecture only; BatchNorm state lives in the explicit `batch_stats` collection, so a caller passes
`{'params': ..., 'batch_stats': ...}` and asks for `mutable=['batch_stats']` in training mode. Every module is
called as `module(x, train, deterministic=None)` (see `common`) and has the fields `bn_axis_name` and `dtype`;
outputs are float32 whatever `dtype` is.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dcgan_jax.models import common
from dcgan_jax.models import dcgan
from dcgan_jax.models import mlp
from dcgan_jax.models import upsample
from dcgan_jax.models.common import activation, output_activation  # pylint: disable=unused-import  (public API)
from dcgan_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator  # pylint: disable=unused-import
from dcgan_jax.models.mlp import MLPDiscriminator, MLPGenerator  # pylint: disable=unused-import
from dcgan_jax.models.upsample import UpsampleGenerator  # pylint: disable=unused-import

POOLS = dcgan.POOLS


def _conv_discriminator(config: ml_collections.ConfigDict) -> DCGANDiscriminator:
  m = config.model
  return DCGANDiscriminator(
      features=tuple(m.d_features), kernel_size=m.d_kernel_size, leaky_slope=m.leaky_slope,
      bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, first_batchnorm=m.d_first_batchnorm,
      batchnorm=m.d_batchnorm, strides=tuple(m.d_strides), pool=m.d_pool, dropout=m.d_dropout,
      activation=m.d_activation, dtype=jnp.dtype(config.dtype))


def _build_dcgan(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m = config.model
  start, _ = dcgan.generator_sizes(config.data.image_size, m.g_start_size, len(m.g_features))
  g = DCGANGenerator(
      start_size=start, features=tuple(m.g_features), kernel_size=m.g_kernel_size, channels=config.data.channels,
      leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, activation=m.g_activation,
      output_activation=m.output_activation, output_size=config.data.image_size if m.g_start_size <= 0 else 0,
      dtype=jnp.dtype(config.dtype))
  return g, _conv_discriminator(config)


def _build_upsample(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m = config.model
  start, n = upsample.generator_sizes(config.data.image_size, m.g_start_size, len(m.g_features))
  g = UpsampleGenerator(
      start_size=start, upsamplings=n, features=tuple(m.g_features), kernel_size=m.g_kernel_size,
      channels=config.data.channels, leaky_slope=m.leaky_slope, bn_momentum=m.bn_momentum,
      bn_epsilon=m.bn_epsilon, activation=m.g_activation, output_activation=m.output_activation,
      dropout=m.g_dropout, dtype=jnp.dtype(config.dtype))
  return g, _conv_discriminator(config)


def _build_mlp(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  m = config.model
  size, dtype = config.data.image_size, jnp.dtype(config.dtype)
  g = MLPGenerator(
      features=tuple(m.g_features), image_shape=(size, size, config.data.channels), leaky_slope=m.leaky_slope,
      bn_momentum=m.bn_momentum, bn_epsilon=m.bn_epsilon, activation=m.g_activation,
      output_activation=m.output_activation, batchnorm=m.g_batchnorm, dtype=dtype)
  d = MLPDiscriminator(features=tuple(m.d_features), leaky_slope=m.leaky_slope, activation=m.d_activation,
                       dropout=m.d_dropout, dtype=dtype)
  return g, d


_BUILDERS: dict[str, Callable[[ml_collections.ConfigDict], tuple[nn.Module, nn.Module]]] = {
    'dcgan': _build_dcgan,
    'upsample': _build_upsample,
    'mlp': _build_mlp,
}
FAMILIES = tuple(_BUILDERS)


def build(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """Returns `(generator, discriminator)` for `config.model.name`, sized by `config.model` and `config.data`.

  The generator maps z float32 [B, latent_dim] to images float32 [B, S, S, channels] (S = `output_size(config)`)
  in `data_range(config)`; the discriminator maps such images to logits float32 [B].
  """
  name = config.model.name
  if name not in _BUILDERS:
    raise ValueError(f'unknown model.name {name!r}; known: {", ".join(FAMILIES)}')
  return _BUILDERS[name](config)


def output_size(config: ml_collections.ConfigDict) -> int:
  """The image size (height = width) the configured generator produces.

  Raises:
    errors.ConfigError: (upsample family) `model.g_start_size` cannot reach `data.image_size`.
  """
  m = config.model
  if m.name == 'dcgan':
    if m.g_start_size <= 0:
      return config.data.image_size  # Derived start, cropped to the exact size.
    return dcgan.generator_sizes(config.data.image_size, m.g_start_size, len(m.g_features))[1]
  if m.name == 'upsample':
    start, n = upsample.generator_sizes(config.data.image_size, m.g_start_size, len(m.g_features))
    return start * 2 ** n
  if m.name == 'mlp':
    return config.data.image_size
  raise ValueError(f'unknown model.name {m.name!r}; known: {", ".join(FAMILIES)}')


def data_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """The range `(lo, hi)` of the generator's output, which the real images are scaled to."""
  return common.OUTPUT_RANGES[config.model.output_activation]


def count_params(tree: Any) -> int:
  """Number of scalar values in a pytree of arrays (or of `jax.ShapeDtypeStruct`s)."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
