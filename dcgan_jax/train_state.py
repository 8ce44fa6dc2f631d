"""The train state and its creation: what a GAN run carries from step to step.

Public API (re-exported by `dcgan_jax`, documented in docs/api.md):
  `TrainState`, `create_train_state(config, rng, *, generator, discriminator, g_optimizer, d_optimizer, loss)`.

Static pieces (the two modules, the two optax transformations, the loss and the noise settings) travel as
non-pytree fields of the state, as flax's `TrainState.apply_fn` does: `train_step` then needs nothing but its two
arguments, is pure, and works under a plain `jax.jit`. The values researchers sweep are data: the learning rates
(optimizer hyperparameters, `optax.inject_hyperparams`), `label_smoothing`, `gp_weight` and, when their option is
on, `ema_decay`, `r1_weight`, `r2_weight` and `class_loss_weight` (arrays in the state).
Two states built from configs that differ only in those compare equal in their static fields, so they share
compiled code and stack into one population (`population.create_population`).
"""

import functools
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from dcgan_jax import losses
from dcgan_jax import models

Array = jax.Array
PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a GAN run carries from step to step.

  `rng` is raw key data (uint32 [2]) so that checkpoints hold plain arrays; each step derives its keys with
  `fold_in(rng, step)`, so the random stream depends only on the seed and the step number.
  """
  step: Array
  g_params: PyTree
  g_batch_stats: PyTree
  g_opt_state: optax.OptState
  d_params: PyTree
  d_batch_stats: PyTree
  d_opt_state: optax.OptState
  rng: Array
  d_updates: Array  # int32: D updates so far (the stream position of the next real batch).
  g_updates: Array  # int32: G updates so far.
  phase: Array  # int32: the adaptive schedule's turn (0: G, 1: D); 0 for the other schedules.
  phase_steps: Array  # int32: steps taken in the current adaptive phase.
  label_smoothing: Array  # float32: one-sided, on D's real targets (losses with `label_smoothing` support).
  gp_weight: Array  # float32: weight of the gradient penalty (losses with `gradient_penalty`).
  generator: nn.Module = flax.struct.field(pytree_node=False)
  discriminator: nn.Module = flax.struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  loss: losses.GANLoss = flax.struct.field(pytree_node=False, default=losses.get('non_saturating'))
  latent_dim: int = flax.struct.field(pytree_node=False, default=100)
  noise: str = flax.struct.field(pytree_node=False, default='uniform')
  # Skip (do not apply) a step whose losses or gradients are not finite, instead of stopping the run.
  skip_nonfinite: bool = flax.struct.field(pytree_node=False, default=False)
  # Class-conditional (> 0: both networks take labels 0..num_classes-1; batches carry 'label'); 0: unconditional.
  num_classes: int = flax.struct.field(pytree_node=False, default=0)
  # Optional parts, None when their option is off (`config.ema_decay`, `r1_weight`, `r2_weight`,
  # `class_loss_weight`). Declared last,
  # with the default None: a checkpoint written before a field existed restores it as None
  # (`checkpointing.restore_step`), and an off-run's leaves keep their order.
  g_ema_params: Optional[PyTree] = None  # Exponential moving average of g_params (`steps.update_ema`).
  ema_decay: Optional[Array] = None  # float32: the EMA's decay (before its warm-up).
  r1_weight: Optional[Array] = None  # float32: gamma of the R1 penalty on reals.
  r2_weight: Optional[Array] = None  # float32: gamma of the R2 penalty on fakes.
  class_loss_weight: Optional[Array] = None  # float32: weight of the auxiliary classification loss (conditional).
  r_every: int = flax.struct.field(pytree_node=False, default=1)  # Lazy R1/R2: every r_every-th D update.
  diffaugment: str = flax.struct.field(pytree_node=False, default='')  # DiffAugment policy (`augment.parse`).


@functools.lru_cache(maxsize=None)
def _adam(b1: float, b2: float) -> optax.GradientTransformation:
  # The learning rate is a hyperparameter in the optimizer state (set by `_init_optimizer`), so configs that
  # differ only in it give the identical transformation and share compiled code.
  return optax.inject_hyperparams(optax.adam, static_args=('b1', 'b2'))(learning_rate=0.0, b1=b1, b2=b2)


def _init_optimizer(tx: optax.GradientTransformation, params: PyTree, learning_rate: float) -> optax.OptState:
  opt_state = tx.init(params)
  hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
  return opt_state._replace(hyperparams=hyperparams)


@functools.lru_cache(maxsize=None)
def _init_fn(module: nn.Module, conditional: bool = False):
  # One compiled initializer per module (modules compare by their fields), shared by the members of a population.
  if conditional:
    return jax.jit(lambda key, x: module.init_with_output(key, x, train=False,
                                                          labels=jnp.zeros((x.shape[0],), jnp.int32)))
  return jax.jit(lambda key, x: module.init_with_output(key, x, train=False))




def _key_data(rng: Array) -> Array:
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return jnp.asarray(rng, jnp.uint32)


def create_train_state(config: ml_collections.ConfigDict, rng: Array, *, generator: Optional[nn.Module] = None,
                       discriminator: Optional[nn.Module] = None,
                       g_optimizer: Optional[optax.GradientTransformation] = None,
                       d_optimizer: Optional[optax.GradientTransformation] = None,
                       loss: 'losses.GANLoss | str | None' = None) -> TrainState:
  """Initializes both networks and both optimizers.

  Args:
    config: a config (`dcgan_jax.configs`); gives `latent_dim`, `noise`, `label_smoothing`, `gp_weight`,
      `skip_nonfinite`, `num_classes` (> 0: a class-conditional state, whose modules take `labels`), `ema_decay`,
      `r1_weight`, `r2_weight`, `r_every`, `diffaugment`, `class_loss_weight`, and whatever of the networks,
      optimizers and loss is not passed.
    rng: a typed or raw PRNG key.
    generator: any `flax.linen` module called as `generator(z, train: bool)`: z float32 [B, latent_dim] -> images
      [B, H, W, C]. Optional, detected: a `bn_axis_name` field (synchronised BatchNorm in the loop's multi-device
      step), a `deterministic` call argument (switches dropout off when sampling with batch statistics). Default:
      built from `config.model.generator` (`models.build_network`).
    discriminator: any `flax.linen` module called as `discriminator(x, train: bool)` -> logits [B] or [B, 1].
      Default: built from `config.model.discriminator`.
    g_optimizer: any `optax.GradientTransformation`. Default: Adam from `config.g_optimizer`, its learning rate an
      injected hyperparameter (data in `g_opt_state`, so populations can differ in it).
    d_optimizer: the same for D (`config.d_optimizer`).
    loss: a `losses.GANLoss` value or the name of a built-in. Default: `config.loss`.

  Returns:
    The `TrainState` at step 0.
  """
  rng = _key_data(rng)
  g_key, d_key, state_key = jax.random.split(rng, 3)
  generator = models.build_network(config, 'generator') if generator is None else generator
  discriminator = models.build_network(config, 'discriminator') if discriminator is None else discriminator
  num_classes = int(config.get('num_classes', 0))
  sample, g_vars = _init_fn(generator, num_classes > 0)(g_key, jnp.zeros((1, config.latent_dim), jnp.float32))
  _, d_vars = _init_fn(discriminator, num_classes > 0)(d_key, jnp.zeros(sample.shape, jnp.float32))
  g_tx = g_optimizer if g_optimizer is not None else _adam(config.g_optimizer.b1, config.g_optimizer.b2)
  d_tx = d_optimizer if d_optimizer is not None else _adam(config.d_optimizer.b1, config.d_optimizer.b2)
  g_opt_state = (g_tx.init(g_vars['params']) if g_optimizer is not None else
                 _init_optimizer(g_tx, g_vars['params'], config.g_optimizer.learning_rate))
  d_opt_state = (d_tx.init(d_vars['params']) if d_optimizer is not None else
                 _init_optimizer(d_tx, d_vars['params'], config.d_optimizer.learning_rate))
  zero = lambda: jnp.zeros((), jnp.int32)  # One buffer per counter: the loop donates the state.
  return TrainState(
      step=zero(), g_params=g_vars['params'], g_batch_stats=g_vars.get('batch_stats', {}), g_opt_state=g_opt_state,
      d_params=d_vars['params'], d_batch_stats=d_vars.get('batch_stats', {}), d_opt_state=d_opt_state,
      rng=state_key, d_updates=zero(), g_updates=zero(), phase=zero(), phase_steps=zero(),
      label_smoothing=jnp.asarray(config.label_smoothing, jnp.float32),
      gp_weight=jnp.asarray(config.gp_weight, jnp.float32),
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      loss=losses.resolve(config.loss if loss is None else loss), latent_dim=config.latent_dim, noise=config.noise,
      skip_nonfinite=config.skip_nonfinite, num_classes=num_classes,
      **_options(config, g_vars['params']))


def _options(config: ml_collections.ConfigDict, g_params: PyTree) -> dict[str, Any]:
  """The state's optional fields from `config` (fields missing from an older config count as off)."""
  def weight(name):
    value = float(config.get(name, 0.0))
    return jnp.asarray(value, jnp.float32) if value > 0 else None
  ema_decay = weight('ema_decay')
  if weight('class_loss_weight') is not None and not int(config.get('num_classes', 0)):
    raise ValueError(f'config.class_loss_weight={config.class_loss_weight} with num_classes=0: the classification '
                     'loss needs classes; set config.num_classes (a conditional config) or config.class_loss_weight=0')
  return dict(g_ema_params=None if ema_decay is None else jax.tree.map(jnp.copy, g_params), ema_decay=ema_decay,
              r1_weight=weight('r1_weight'), r2_weight=weight('r2_weight'), r_every=int(config.get('r_every', 1)),
              class_loss_weight=weight('class_loss_weight'),
              diffaugment=str(config.get('diffaugment', '')))


def with_hyperparameters(state: TrainState, source: TrainState) -> TrainState:
  """`state` with the swept values of `source`: label smoothing, gradient-penalty weight, the EMA decay, the R1/R2
  weights, the classification loss's weight and the optimizers' injected hyperparameters (when both optimizer
  states carry them).

  The EMA follows `source` too: dropped when `source` has none; started from `state.g_params` when `state` has none
  (EMA switched on at a resume, or a checkpoint written before EMA existed).
  """
  def hyper(opt_state, src):
    if hasattr(opt_state, 'hyperparams') and hasattr(src, 'hyperparams'):
      return opt_state._replace(hyperparams=src.hyperparams)
    return opt_state
  ema = state.g_ema_params
  if source.g_ema_params is None:
    ema = None
  elif ema is None:
    ema = jax.tree.map(jnp.copy, state.g_params)
  return state.replace(label_smoothing=source.label_smoothing, gp_weight=source.gp_weight, g_ema_params=ema,
                       ema_decay=source.ema_decay, r1_weight=source.r1_weight, r2_weight=source.r2_weight,
                       class_loss_weight=source.class_loss_weight,
                       g_opt_state=hyper(state.g_opt_state, source.g_opt_state),
                       d_opt_state=hyper(state.d_opt_state, source.d_opt_state))
