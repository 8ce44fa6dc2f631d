"""The pure functions over the train state (`dcgan_jax.train_state`): the train step, its single D and G updates,
sampling and scoring.

Public API (re-exported by `dcgan_jax`, documented in docs/api.md):
  `train_step(state, batch)`, `d_step`, `g_step`, `generate(state, z, labels=None, *, use_batch_stats, generator)`,
  `discriminate(state, images, labels=None)`, `sample_noise`.

Each takes the state as its first argument and needs nothing else from outside: pure, and works under a plain
`jax.jit` and `jax.vmap` (populations). Data-parallel training over a mesh: `dcgan_jax.parallel`.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from dcgan_jax import errors
from dcgan_jax import steps
from dcgan_jax import train_state

Array = jax.Array
PyTree = Any

sample_noise = steps.sample_noise


def batch_labels(state: train_state.TrainState, batch: dict[str, Array], rows: bool = True) -> Optional[Array]:
  """`batch['label']` (int32 [B]; with `rows`, as one row [1, B]) for a conditional state, None otherwise.

  Raises:
    errors.UserError: a conditional state and no 'label' in the batch.
  """
  if not state.num_classes:
    return None
  if 'label' not in batch:
    raise errors.UserError(f'this state is class-conditional (num_classes={state.num_classes}): the batch needs '
                           f"'label', int32 [B] in 0..{state.num_classes - 1}, beside 'image'")
  labels = jnp.asarray(batch['label'], jnp.int32)
  return labels[None] if rows else labels


def train_step(state: train_state.TrainState, batch: dict[str, Array]) -> tuple[train_state.TrainState, dict[str, Array]]:
  """One GAN training step: a D update, then a G update through the updated D. Pure; jit it.

  Args:
    state: the carried `train_state.TrainState`.
    batch: `{'image': float32 [B, H, W, C]}` in the generator's output range ([-1, 1] for tanh generators); a
      conditional state (`num_classes` > 0) also needs `'label': int32 [B]` in 0..num_classes-1 (the fake batch's
      labels are drawn uniformly from the state's key, per step).

  Returns:
    `(new_state, metrics)`; metrics are float32 scalars: `d_loss`, `g_loss`, `d_real` = mean D(x) and `d_fake` =
    mean D(G(z)) (sigmoid of the logits, before the D update), `d_acc_real`, `d_acc_fake` (D's accuracy on each),
    `d_updates` and `g_updates` (1 and 1); `d_class_loss` and `g_class_loss` with `state.class_loss_weight`. A
    finite loss can still leave NaN or Inf parameters behind: check the new state with `dcgan_jax.all_finite`
    where it matters (the training loop does before each log, evaluation and checkpoint).
  """
  return steps.step(state, batch['image'][None], steps.ALTERNATING, labels=batch_labels(state, batch))


def d_step(state: train_state.TrainState, batch: dict[str, Array]) -> tuple[train_state.TrainState, dict[str, Array]]:
  """One D update on `batch['image']` (as in `train_step`) and a fresh fake batch; G's parameters stay. Pure."""
  return steps.step(state, batch['image'][None], steps.D_ONLY, labels=batch_labels(state, batch))


def g_step(state: train_state.TrainState, batch: dict[str, Array]) -> tuple[train_state.TrainState, dict[str, Array]]:
  """One G update through the current D on fresh noise; D's parameters stay. `batch` only sets the batch size."""
  return steps.step(state, batch['image'][None], steps.G_ONLY, labels=batch_labels(state, batch))


GENERATORS = ('auto', 'ema', 'raw')  # What `generate(..., generator=)` accepts.


def generator_params(state: train_state.TrainState, generator: str = 'auto') -> PyTree:
  """The generator weights to sample with: 'ema' (the moving average; the state must carry one), 'raw'
  (`g_params`, the weights the optimizer trains) or 'auto' (the EMA when the state carries one, else raw)."""
  if generator not in GENERATORS:
    raise ValueError(f'generator={generator!r}: must be one of {", ".join(GENERATORS)}')
  if generator == 'ema' and state.g_ema_params is None:
    raise ValueError("generator='ema': this state has no EMA of the generator (config.ema_decay=0); use 'raw'")
  if generator == 'raw' or state.g_ema_params is None:
    return state.g_params
  return state.g_ema_params


def generation_labels(state: train_state.TrainState, labels: Optional[Array], num: int) -> dict[str, Array]:
  """The keyword arguments that pass `labels` (int32 [num]) to the state's generator: {'labels': ...} for a
  conditional state, {} for an unconditional one.

  Raises:
    errors.UserError: a conditional state without labels, labels for an unconditional one, or not one per image.
  """
  if not state.num_classes:
    if labels is not None:
      raise errors.UserError('labels given, but this state is unconditional (num_classes=0); drop them or train '
                             'with config.num_classes > 0')
    return {}
  if labels is None:
    raise errors.UserError(f'this state is class-conditional (num_classes={state.num_classes}): pass labels, '
                           f'int32 [N] in 0..{state.num_classes - 1}, one per noise vector')
  labels = jnp.asarray(labels, jnp.int32)
  if labels.shape != (num,):
    raise errors.UserError(f'labels must be int32 [{num}] (one per noise vector), got shape {labels.shape}')
  return {'labels': labels}


def generate(state: train_state.TrainState, z: Array, labels: Optional[Array] = None, *, use_batch_stats: bool = False,
             generator: str = 'auto') -> Array:
  """Images from noise `z: float32 [N, latent_dim]` -> `float32 [N, H, W, C]` in the generator's range. Pure and
  differentiable in `z` (latent inversion: `jax.grad` of a loss of `generate(state, z)`).

  Args:
    state: a `train_state.TrainState`.
    z: float32 [N, latent_dim], N >= 1.
    labels: int32 [N], the class of each image, in 0..num_classes-1: required for a class-conditional state
      (`state.num_classes` > 0), None for an unconditional one (`errors.UserError` otherwise).
    use_batch_stats: keyword, static. False (default): BatchNorm normalizes with the running averages gathered in
      training; each image depends on its own z only, and a single z gets a gradient. True: with the statistics of
      this batch of z (as the original TensorFlow DCGAN samples; `config.model.sample_use_batch_stats`), dropout
      off when the generator takes `deterministic`. Each image then depends on the whole batch; a single z through
      a BatchNorm over the batch alone (dense generators) is normalized away, its gradient exactly 0.
    generator: keyword, static: 'auto' (default: the EMA weights when the state carries them, else `g_params`),
      'ema' or 'raw' (`generator_params`). The EMA weights use the raw generator's BatchNorm running averages.

  Returns:
    float32 [N, H, W, C].
  """
  variables = {'params': generator_params(state, generator), 'batch_stats': state.g_batch_stats}
  conditioning = generation_labels(state, labels, z.shape[0])
  if use_batch_stats:
    extra = {'deterministic': True} if steps.accepts(state.generator, 'deterministic') else {}
    images, _ = state.generator.apply(variables, z, train=True, mutable=['batch_stats'], **extra, **conditioning)
    return images
  return state.generator.apply(variables, z, train=False, **conditioning)


def discriminate(state: train_state.TrainState, images: Array, labels: Optional[Array] = None) -> Array:
  """D's probability that each image is real: `images: float32 [N, H, W, C]` in the data range -> float32 [N] in
  [0, 1] (sigmoid of the logits; BatchNorm with running averages, no dropout); `labels` int32 [N] as for
  `generate` (required for a conditional state). Pure."""
  conditioning = generation_labels(state, labels, images.shape[0])
  logits = state.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_batch_stats}, images,
                                     train=False, **conditioning)
  return jax.nn.sigmoid(logits)
