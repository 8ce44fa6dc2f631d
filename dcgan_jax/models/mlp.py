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
  BatchNorm if `batchnorm`), a Dense to S*S*C, the output activation, reshaped (with `num_classes` > 0, z is
  first concatenated with a label embedding: `common.embed_label`)."""
  features: Sequence[int]  # Hidden Dense widths.
  image_shape: tuple[int, int, int]  # (S, S, C) (the builder passes data.image_size and data.channels).
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  bn_momentum: float = 0.99  # BatchNorm running-average momentum (Keras's default).
  bn_epsilon: float = 1e-3  # BatchNorm epsilon (Keras's default).
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  output_activation: str = 'sigmoid'  # 'sigmoid' (images in [0, 1]) or 'tanh' ([-1, 1]).
  batchnorm: bool = True  # BatchNorm after each hidden layer.
  num_classes: int = 0  # > 0: conditional on labels 0..num_classes-1 (the builder passes config.num_classes).
  bn_axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z: Array, train: bool, deterministic: Optional[bool] = None,
               labels: Optional[Array] = None) -> Array:
    del deterministic  # No dropout; accepted so that every generator is called alike.
    act = common.activation(self.activation, self.leaky_slope)
    x = common.embed_label(z, labels, self.num_classes, self.dtype)
    for width in self.features:
      x = act(nn.Dense(width, dtype=self.dtype)(x))
      if self.batchnorm:
        x = common.batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
    x = nn.Dense(int(np.prod(self.image_shape)), dtype=self.dtype)(x).astype(jnp.float32)
    return common.output_activation(self.output_activation)(x).reshape((z.shape[0],) + tuple(self.image_shape))


class MLPDiscriminator(nn.Module):
  """images float32 [B, H, W, C] -> logits float32 [B]: flatten, Dense+activation (+dropout) per `features`,
  Dense to 1 (plus, with `num_classes` > 0, the projection term over the last hidden layer: `common.projection`)."""
  features: Sequence[int]  # Hidden Dense widths.
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  dropout: float = 0.0  # Dropout rate after each hidden activation; 0 means none.
  num_classes: int = 0  # > 0: conditional on labels 0..num_classes-1 (the builder passes config.num_classes).
  spectral_norm: bool = False  # Spectral normalization of every Dense (SN-GAN); its state in batch_stats.
  bn_axis_name: Optional[str] = None  # Unused (no BatchNorm); present so every discriminator clones alike.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array, train: bool, deterministic: Optional[bool] = None,
               labels: Optional[Array] = None) -> Array:
    act = common.activation(self.activation, self.leaky_slope)
    x = images.reshape(images.shape[0], -1)
    dense = lambda width: common.spectral(nn.Dense(width, dtype=self.dtype), self.spectral_norm, train)
    for width in self.features:
      x = common.dropout(act(dense(width)(x)), self.dropout, train, deterministic)
    logit = dense(1)(x).reshape(images.shape[0]).astype(jnp.float32)
    return common.with_projection(self, logit, x, labels, self.num_classes)
