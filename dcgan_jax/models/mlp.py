"""The dense family: MLP generator and discriminator (the Keras MLP GAN, the TensorFlow 'vanilla' MNIST GAN)."""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dcgan_jax.models import common

Array = jax.Array


class MLPGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, S, S, C]: Dense layers of `features` (each Dense, activation, then
  BatchNorm if `batchnorm`), a Dense to S*S*C, the output activation, reshaped."""
  features: Sequence[int]  # Hidden Dense widths.
  image_shape: tuple[int, int, int]  # (S, S, C) (the builder passes data.image_size and data.channels).
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  bn_momentum: float = 0.99  # BatchNorm running-average momentum (Keras's default).
  bn_epsilon: float = 1e-3  # BatchNorm epsilon (Keras's default).
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  output_activation: str = 'sigmoid'  # 'sigmoid' (images in [0, 1]) or 'tanh' ([-1, 1]).
  batchnorm: bool = True  # BatchNorm after each hidden layer.
  bn_axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: Array, train: bool, deterministic: Optional[bool] = None) -> Array:
    del deterministic  # No dropout; accepted so that every generator is called alike.
    act = common.activation(self.activation, self.leaky_slope)
    x = z
    for width in self.features:
      x = act(nn.Dense(width, dtype=self.dtype)(x))
      if self.batchnorm:
        x = common.batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
    x = nn.Dense(int(np.prod(self.image_shape)), dtype=self.dtype)(x).astype(jnp.float32)
    return common.output_activation(self.output_activation)(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
  """images float32 [B, H, W, C] -> logits float32 [B]: flatten, Dense+activation (+dropout) per `features`,
  Dense to 1."""
  features: Sequence[int]  # Hidden Dense widths.
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  dropout: float = 0.0  # Dropout rate after each hidden activation; 0 means none.
  bn_axis_name: Optional[str] = None  # Unused (no BatchNorm); present so every discriminator clones alike.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array, train: bool, deterministic: Optional[bool] = None) -> Array:
    act = common.activation(self.activation, self.leaky_slope)
    x = images.reshape(images.shape[0], -1)
    for width in self.features:
      x = common.dropout(act(nn.Dense(width, dtype=self.dtype)(x)), self.dropout, train, deterministic)
    return nn.Dense(1, dtype=self.dtype)(x).reshape(images.shape[0]).astype(jnp.float32)
