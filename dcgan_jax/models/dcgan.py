"""The convolutional family: the DCGAN generator, and the strided-conv discriminator that every conv family shares.

Generator sizes. The generator doubles its start size once per entry of `features` (the first entry is the width
at the start size, each further entry and the output layer are stride-2 transposed convs), so it makes
`start * 2**n` images, `n = len(features)`. With `model.generator.start_size = 0` the start is derived from
`data.image_size`: `start = ceil(image_size / 2**n)`. When `image_size` is a multiple of `2**n` that is exact
(128 with five widths: 4 -> 8 -> ... -> 128). Otherwise the last layer makes the next multiple of `2**n` and the
generator returns its central `image_size` window, cutting fewer than `2**n` rows and columns (300 with five widths:
start 10, 320 -> 300, 10 cut on each side). A crop keeps every output pixel a generated one, with no interpolation
blur and an identity gradient, and the discriminator never sees the cut border.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dcgan_jax import ops
from dcgan_jax.models import common

Array = jax.Array
POOLS = ('none', 'max')


def generator_sizes(image_size: int, start_size: int, num_upsamplings: int) -> tuple[int, int]:
  """The DCGAN generator's `(start, full)` sizes: its first layer's size, and its last layer's before cropping.

  Args:
    image_size: the wanted output size (`data.image_size`), > 0.
    start_size: `model.generator.start_size`; 0 derives the start from `image_size` (see the module docstring).
    num_upsamplings: n = `len(model.generator.features)` stride-2 doublings.

  Returns:
    `(start, start * 2**n)`; with `start_size > 0`, `start == start_size`, and the generator makes `full` x `full`
    images, which must equal `image_size` (the config validation checks).
  """
  scale = 2 ** num_upsamplings
  start = start_size if start_size > 0 else -(-image_size // scale)
  return start, start * scale


class DCGANGenerator(nn.Module):
  """z [B, latent] -> images float32 [B, S, S, C] in the output activation's range.

  A transposed conv 'VALID' turns z (as a 1x1 image) into start_size x start_size x features[0]; each further
  entry of `features` and the output layer is a stride-2 'SAME' transposed conv that doubles the size. Hidden layers
  have no bias (BatchNorm's offset replaces it), BatchNorm and the activation. S = start_size * 2**len(features),
  or `output_size` when that is set and smaller (the central window; see the module docstring). With
  `num_classes` > 0, z is first concatenated with a learned embedding of `labels` (`common.embed_label`), and with
  `conditional_batchnorm` every hidden BatchNorm's output is also scaled and shifted per class
  (`common.label_modulation`: 2 * width parameters per class and hidden layer, zero at initialization).
  """
  start_size: int  # Size after the first layer; in a config 0 derives it from data.image_size (see above).
  features: Sequence[int]  # Widths: the first at start_size, then one per stride-2 layer.
  kernel_size: int  # Kernel of the stride-2 transposed convs.
  channels: int  # Output channels (the builder passes data.channels).
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  bn_momentum: float = 0.99  # BatchNorm running-average momentum (Keras's default).
  bn_epsilon: float = 1e-3  # BatchNorm epsilon (Keras's default).
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  output_activation: str = 'tanh'  # 'tanh' (images in [-1, 1]) or 'sigmoid' ([0, 1]).
  output_size: int = 0  # > 0: crop the last layer's output to this size; 0: no crop (the builder derives it).
  num_classes: int = 0  # > 0: conditional on labels 0..num_classes-1 (the builder passes config.num_classes).
  conditional_batchnorm: bool = False  # With num_classes > 0: per-class scale and shift after each hidden BatchNorm.
  spectral_norm: bool = False  # Spectral normalization of every transposed conv (SAGAN, BigGAN); state in batch_stats.
  weight_init: str = 'flax'  # 'flax' (lecun_normal, zero biases) or 'pytorch' (its defaults: common.initializers).
  output_weight_init: str = ''  # The output layer's: '' (as weight_init), 'flax' or 'pytorch'.
  bn_axis_name: Optional[str] = None  # Set to the device axis for BatchNorm statistics over the global batch.
  dtype: Any = jnp.float32  # Computation dtype (bfloat16 for mixed precision); parameters stay float32.

  @nn.compact
  def __call__(self, z: Array, train: bool, deterministic: Optional[bool] = None,
               labels: Optional[Array] = None) -> Array:
    del deterministic  # No dropout; accepted so that every generator is called alike.
    if self.conditional_batchnorm and not self.num_classes:
      raise ValueError('conditional_batchnorm=True with num_classes=0: it needs classes; set num_classes '
                       '(config.num_classes) or drop it')
    sn = lambda layer: common.spectral(layer, self.spectral_norm, train)
    act = common.activation(self.activation, self.leaky_slope)
    z = common.embed_label(z, labels, self.num_classes, self.dtype)
    layer = iter(range(len(self.features)))

    def norm_act(x: Array) -> Array:
      x = common.batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
      if self.conditional_batchnorm:
        x = common.label_modulation(x, labels, self.num_classes, f'label_batchnorm_{next(layer)}')
      return act(x)

    x = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    # PyTorch's fan-in of a transposed convolution: its output channels times the kernel's area.
    inits = lambda width, size, rule='': common.initializers(rule or self.weight_init, width * size * size)
    x = sn(ops.ConvTranspose(self.features[0], (self.start_size,) * 2, padding='VALID', use_bias=False,
                             dtype=self.dtype, **inits(self.features[0], self.start_size)))(x)
    x = norm_act(x)
    k = (self.kernel_size,) * 2
    for width in self.features[1:]:
      x = sn(ops.ConvTranspose(width, k, strides=(2, 2), padding='SAME', use_bias=False, dtype=self.dtype,
                               **inits(width, self.kernel_size)))(x)
      x = norm_act(x)
    x = sn(ops.ConvTranspose(self.channels, k, strides=(2, 2), padding='SAME', use_bias=True, dtype=self.dtype,
                             **inits(self.channels, self.kernel_size, self.output_weight_init)))(x)
    if 0 < self.output_size < x.shape[1]:
      x = common.center_crop(x, self.output_size)
    return common.output_activation(self.output_activation)(x.astype(jnp.float32))


class DCGANDiscriminator(nn.Module):
  """images float32 [B, H, W, C] -> logits float32 [B].

  One block per entry of `features`: a conv that downsamples by the block's stride (`strides`, default 2 for every
  block; 'SAME' padding, so odd sizes round up), or with `pool='max'` a stride-1 conv followed by a max-pool of that
  stride; then BatchNorm (if `batchnorm`, and for the first block only if also `first_batchnorm`), the activation,
  and dropout of rate `dropout`. Convs followed by BatchNorm have no bias (its offset replaces it). A final 'VALID'
  conv as large as what is left gives one logit (the same as flatten + Dense(1), parameter for parameter). With
  `num_classes` > 0 a projection term <embed(y), h> over the flattened last feature map h is added to the logit
  (`common.projection`).
  """
  features: Sequence[int]  # One conv block per entry.
  kernel_size: int  # Kernel of the blocks' convs.
  leaky_slope: float = 0.2  # LeakyReLU negative slope.
  bn_momentum: float = 0.99  # BatchNorm running-average momentum (Keras's default).
  bn_epsilon: float = 1e-3  # BatchNorm epsilon (Keras's default).
  first_batchnorm: bool = True  # BatchNorm after the first block's conv (the MNIST DCGAN has it).
  batchnorm: bool = True  # False: no BatchNorm at all (a WGAN-GP critic must score each example on its own).
  strides: Sequence[int] = ()  # Per-block downsampling factor; () means 2 for every block.
  pool: str = 'none'  # 'none': strided convs; 'max': stride-1 convs, each followed by a max-pool.
  dropout: float = 0.0  # Dropout rate after each block's activation; 0 means none.
  activation: str = 'leaky_relu'  # Hidden layers: 'leaky_relu' or 'relu'.
  num_classes: int = 0  # > 0: conditional on labels 0..num_classes-1 (the builder passes config.num_classes).
  spectral_norm: bool = False  # Spectral normalization of every conv, the logit conv too (SN-GAN); state: batch_stats.
  weight_init: str = 'flax'  # 'flax' (lecun_normal, zero biases) or 'pytorch' (its defaults: common.initializers).
  bn_axis_name: Optional[str] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: Array, train: bool, deterministic: Optional[bool] = None,
               labels: Optional[Array] = None) -> Array:
    if self.pool not in POOLS:
      raise ValueError(f'unknown pool {self.pool!r}; use one of {POOLS}')
    strides = tuple(self.strides) or (2,) * len(self.features)
    if len(strides) != len(self.features):
      raise ValueError(f'{len(strides)} strides for {len(self.features)} discriminator blocks')
    act = common.activation(self.activation, self.leaky_slope)
    x = images
    k = (self.kernel_size,) * 2
    for i, (width, stride) in enumerate(zip(self.features, strides)):
      use_bn = self.batchnorm and (i > 0 or self.first_batchnorm)
      conv_stride = 1 if self.pool == 'max' else stride
      conv = ops.Conv(width, k, strides=(conv_stride,) * 2, padding='SAME', use_bias=not use_bn, dtype=self.dtype,
                      **common.initializers(self.weight_init, x.shape[-1] * self.kernel_size ** 2))
      x = common.spectral(conv, self.spectral_norm, train)(x)
      if self.pool == 'max' and stride > 1:
        x = ops.max_pool(x, (stride, stride))  # flax.linen.max_pool's values and gradient, faster backward.
      if use_bn:
        x = common.batchnorm(train, self.bn_momentum, self.bn_epsilon, self.bn_axis_name, self.dtype)(x)
      x = common.dropout(act(x), self.dropout, train, deterministic)
    last = ops.Conv(1, x.shape[1:3], padding='VALID', dtype=self.dtype,
                    **common.initializers(self.weight_init, x.shape[1] * x.shape[2] * x.shape[3]))
    last = common.spectral(last, self.spectral_norm, train)
    logit = last(x).reshape(x.shape[0]).astype(jnp.float32)
    return common.with_projection(self, logit, x, labels, self.num_classes)
