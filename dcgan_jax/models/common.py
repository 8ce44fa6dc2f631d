"""Building blocks shared by the model families: nonlinearities, BatchNorm, dropout, resizing.

Every module of every family has the same call signature, `module(x, train, deterministic=None)`:

* `train` selects BatchNorm's mode (batch statistics, updating `batch_stats`, versus running averages);
* `deterministic` switches dropout off. It defaults to `not train`, so training applies dropout (with the
  'dropout' rng) and inference does not. Sampling that normalizes with batch statistics
  (`train=True`, `config.model.sample_use_batch_stats`) passes `deterministic=True`: batch statistics without
  random masks, and no 'dropout' rng needed.

Class-conditional networks (`num_classes` > 0, set by the builder from `config.num_classes`) also take
`labels: int32 [B]` in 0..num_classes-1 (`module(x, train, deterministic=None, labels=None)`): the generator
concatenates a learned embedding of the label to z (`embed_label`), the discriminator adds a projection term
(`projection`, Miyato & Koyama 2018). With `num_classes` = 0 neither exists and `labels` must be None.
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

OUTPUT_RANGES = {'tanh': (-1.0, 1.0), 'sigmoid': (0.0, 1.0)}
ACTIVATIONS = ('leaky_relu', 'relu')
INITS = ('flax', 'pytorch')


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


def initializers(init: str, fan_in: int) -> dict[str, Any]:
  """The `kernel_init` and `bias_init` of a layer whose PyTorch fan-in is `fan_in`, for the weight initialization
  `init`: 'flax' (flax's defaults: lecun_normal kernels, zero biases; the fan-in is then flax's own) or 'pytorch'
  (PyTorch's default for Linear, Conv2d and ConvTranspose2d: kernels and biases uniform in +-1/sqrt(fan_in), i.e.
  kaiming-uniform with a=sqrt(5); PyTorch counts a convolution's fan-in as in_channels * kh * kw and a transposed
  convolution's as out_channels * kh * kw)."""
  if init == 'flax':
    return {}
  if init == 'pytorch':
    bound = 1.0 / fan_in ** 0.5
    uniform = lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
    return {'kernel_init': uniform, 'bias_init': uniform}
  raise ValueError(f'unknown init {init!r}; use one of {", ".join(INITS)}')


def spectral(layer: nn.Module, enabled: bool, train: bool) -> Callable[..., Array]:
  """`layer` as is, or with spectral normalization (Miyato et al. 2018) when `enabled`: flax's `nn.SpectralNorm`
  divides each kernel (flattened to [fan_in, out]) by its largest singular value, estimated by one power iteration
  per call. The iteration's vector `u` and the estimate `sigma` are state, kept in 'batch_stats' beside BatchNorm's
  (`SpectralNorm_N/<layer>/kernel/u`, `.../sigma`), so the train state carries and checkpoints them; calls in
  training mode (`train`) move them on, inference calls use them as they are. The layer's parameters keep their
  names, so `enabled` changes no parameter count."""
  if not enabled:
    return layer
  return functools.partial(nn.SpectralNorm(layer), update_stats=train)


def dropout(x: Array, rate: float, train: bool, deterministic: Optional[bool]) -> Array:
  """Dropout of `rate` (0: the identity, no rng used); active when not deterministic (default: when training)."""
  if not rate:
    return x
  off = (not train) if deterministic is None else deterministic
  return nn.Dropout(rate, deterministic=off)(x)


def check_labels(labels: Optional[Array], num_classes: int, module: str) -> None:
  """Raises ValueError (one line) when `labels` and `num_classes` disagree: labels missing for a conditional
  module, or given to an unconditional one."""
  if num_classes > 0 and labels is None:
    raise ValueError(f'the {module} is class-conditional (num_classes={num_classes}): pass labels, int32 [B] in '
                     f'0..{num_classes - 1}')
  if num_classes <= 0 and labels is not None:
    raise ValueError(f'the {module} is unconditional (num_classes=0): labels must be None; set config.num_classes '
                     'to train a class-conditional GAN')


def embed_label(z: Array, labels: Optional[Array], num_classes: int, dtype: Any) -> Array:
  """The generator's input: z [B, L] as is when `num_classes` is 0, else z concatenated with a learned embedding
  of the label (`nn.Embed(num_classes, L)`, named 'label_embedding'): [B, 2L]."""
  check_labels(labels, num_classes, 'generator')
  if num_classes <= 0:
    return z
  embedding = nn.Embed(num_classes, z.shape[-1], dtype=dtype, name='label_embedding')(labels)
  return jnp.concatenate([z, embedding.astype(z.dtype)], axis=-1)


def label_modulation(x: Array, labels: Optional[Array], num_classes: int, name: str) -> Array:
  """Class-conditional BatchNorm's class term (de Vries et al. 2017; BigGAN): `x * (1 + gamma[y]) + beta[y]` per
  channel, gamma and beta rows of one `nn.Embed(num_classes, 2 * C)` named `name`, initialized to zero (so a fresh
  network computes what it would without them). `x` is a BatchNorm's output, [B, ..., C]; labels int32 [B]."""
  check_labels(labels, num_classes, 'generator')
  width = x.shape[-1]
  table = nn.Embed(num_classes, 2 * width, embedding_init=nn.initializers.zeros, name=name)(labels)
  gamma, beta = jnp.split(table.astype(x.dtype), 2, axis=-1)
  shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (width,)
  return x * (1 + gamma.reshape(shape)) + beta.reshape(shape)


CLASS_LOGITS = 'class_logits'  # What conditional discriminators sow into 'intermediates' (`projection`'s scores).


def with_projection(module: nn.Module, logit: Array, features: Array, labels: Optional[Array],
                    num_classes: int) -> Array:
  """A discriminator's final logit float32 [B]: `logit` as is when `num_classes` is 0, else plus the projection
  term of `features` (`projection`), every class's score sown into `module`'s 'intermediates' as `CLASS_LOGITS`.
  Checks the labels against `num_classes` either way (`check_labels`)."""
  check_labels(labels, num_classes, 'discriminator')
  if not num_classes:
    return logit
  term, class_logits = projection(features, labels, num_classes)
  module.sow('intermediates', CLASS_LOGITS, class_logits)
  return logit + term


def projection(features: Array, labels: Optional[Array], num_classes: int) -> tuple[Array, Array]:
  """The projection discriminator's class term <embed(y), h> per example: float32 [B] (Miyato & Koyama 2018; the
  logit is psi(h) + this); and the same score for every class, <embed(c), h>: float32 [B, num_classes], the class
  logits of the auxiliary classification loss (`config.class_loss_weight`; discriminators sow them as
  `CLASS_LOGITS`). Discriminators call it through `with_projection`.

  Args:
    features: h, float [B, ...] (flattened here): the features the discriminator's last linear layer reads.
    labels: int32 [B] in 0..num_classes-1.
    num_classes: K > 0; the embedding is `nn.Embed(K, h.size / B)`, named 'label_projection'.
  """
  check_labels(labels, num_classes, 'discriminator')
  h = features.reshape(features.shape[0], -1).astype(jnp.float32)
  embed = nn.Embed(num_classes, h.shape[-1], name='label_projection')
  return jnp.sum(embed(labels) * h, axis=-1), embed.attend(h)


def upsample_nearest(x: Array, factor: int = 2) -> Array:
  """[B, H, W, C] -> [B, H*factor, W*factor, C], each pixel repeated (Keras's UpSampling2D default)."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def center_crop(x: Array, size: int) -> Array:
  """[B, H, W, C] -> [B, size, size, C], the central window (the extra row/column, if odd, is cut at the end)."""
  top, left = (x.shape[1] - size) // 2, (x.shape[2] - size) // 2
  return x[:, top:top + size, left:left + size, :]
