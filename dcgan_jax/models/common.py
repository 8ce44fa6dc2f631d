"""Building blocks shared by the model families: nonlinearities, BatchNorm, dropout, resizing.

Every module of every family has the same call signature, `module(x, train, deterministic=None)`:

* `train` selects BatchNorm's mode (batch statistics, updating `batch_stats`, versus running averages);
* `deterministic` switches dropout off. It defaults to `not train`, so training applies dropout (with the
  'dropout' rng) and inference does not. Sampling that normalizes with batch statistics
  (`train=True`, `config.model.sample_use_batch_stats`) passes `deterministic=True`: batch statistics without
  random masks, and no 'dropout' rng needed.
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

OUTPUT_RANGES = {'tanh': (-1.0, 1.0), 'sigmoid': (0.0, 1.0)}
ACTIVATIONS = ('leaky_relu', 'relu')


def activation(name: str, leaky_slope: float) -> Callable[[Array], Array]:
  """The hidden-layer nonlinearity `name` ('leaky_relu' with `leaky_slope`, or 'relu')."""
  if name == 'leaky_relu':
    return lambda x: nn.leaky_relu(x, leaky_slope)
  if name == 'relu':
    return nn.relu
  raise ValueError(f'unknown activation {name!r}; use leaky_relu or relu')


def output_activation(name: str) -> Callable[[Array], Array]:
  """The generator's last nonlinearity: 'tanh' (images in [-1, 1]) or 'sigmoid' (images in [0, 1])."""
  return {'tanh': jnp.tanh, 'sigmoid': jax.nn.sigmoid}[name]


def batchnorm(train: bool, momentum: float, epsilon: float, axis_name: Optional[str], dtype: Any) -> nn.BatchNorm:
  """A BatchNorm in training (batch statistics, synchronized over `axis_name`) or inference mode."""
  # Statistics are reduced in float32 whatever `dtype` is (flax's force_float32_reductions), and kept in float32.
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=epsilon,
                      axis_name=axis_name if train else None, dtype=dtype)


def dropout(x: Array, rate: float, train: bool, deterministic: Optional[bool]) -> Array:
  """Dropout of `rate` (0: the identity, no rng used); active when not deterministic (default: when training)."""
  if not rate:
    return x
  off = (not train) if deterministic is None else deterministic
  return nn.Dropout(rate, deterministic=off)(x)


def upsample_nearest(x: Array, factor: int = 2) -> Array:
  """[B, H, W, C] -> [B, H*factor, W*factor, C], each pixel repeated (Keras's UpSampling2D default)."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def center_crop(x: Array, size: int) -> Array:
  """[B, H, W, C] -> [B, size, size, C], the central window (the extra row/column, if odd, is cut at the end)."""
  top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
  return x[:, top:top + size, left:left + size, :]
