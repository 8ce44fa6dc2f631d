"""Train state, the pure train step, sampling, and the training loop.

Public API (stable, documented in the README):
  `TrainState`, `create_train_state(config, rng)`, `train_step(state, batch)`, `generate(state, config, z)`,
  `train_and_evaluate(config, workdir)`.

Static pieces (the two modules, the two optax transformations, the loss and the noise settings) travel as
non-pytree fields of the state, as flax's `TrainState.apply_fn` does: `train_step` then needs nothing but its two
arguments, is pure, and works under a plain `jax.jit`. Two states built from the same config compare equal in
those fields, so they share compiled code.
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
  generator: nn.Module = flax.struct.field(pytree_node=False)
  discriminator: nn.Module = flax.struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  loss: str = flax.struct.field(pytree_node=False, default='non_saturating')
  latent_dim: int = flax.struct.field(pytree_node=False, default=100)
  noise: str = flax.struct.field(pytree_node=False, default='uniform')
  # Skip (do not apply) a step whose losses or gradients are not finite, instead of stopping the run.
  skip_nonfinite: bool = flax.struct.field(pytree_node=False, default=False)
  label_smoothing: float = flax.struct.field(pytree_node=False, default=0.0)  # One-sided, on D's real targets.
  gp_weight: float = flax.struct.field(pytree_node=False, default=10.0)  # Losses with a gradient penalty.
  n_critic: int = flax.struct.field(pytree_node=False, default=1)  # D updates per G update.


@functools.lru_cache(maxsize=None)
def _adam(learning_rate: float, b1: float, b2: float) -> optax.GradientTransformation:
  # Cached so that equal configs give the identical (hence equal-comparing) transformation and share compiled code.
  return optax.adam(learning_rate, b1=b1, b2=b2)


def sample_noise(rng: Array, shape: tuple[int, ...], noise: str) -> Array:
  """Noise z: float32 `shape`, uniform in [-1, 1] or standard normal."""
  if noise == 'uniform':
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)
  if noise == 'normal':
    return jax.random.normal(rng, shape)
  raise ValueError(f'unknown noise {noise!r}; use uniform or normal')


def _key_data(rng: Array) -> Array:
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return jnp.asarray(rng, jnp.uint32)


def create_train_state(config: ml_collections.ConfigDict, rng: Array) -> TrainState:
  """Initializes both networks and both optimizers from `config`; `rng` is a typed or raw PRNG key."""
  rng = _key_data(rng)
  g_key, d_key, state_key = jax.random.split(rng, 3)
  generator, discriminator = models.build(config)
  size, channels = models.output_size(config), config.data.channels
  g_vars = jax.jit(functools.partial(generator.init, train=False))(g_key, jnp.zeros((1, config.latent_dim)))
  d_vars = jax.jit(functools.partial(discriminator.init, train=False))(
      d_key, jnp.zeros((1, size, size, channels)))
  g_tx = _adam(config.g_optimizer.learning_rate, config.g_optimizer.b1, config.g_optimizer.b2)
  d_tx = _adam(config.d_optimizer.learning_rate, config.d_optimizer.b1, config.d_optimizer.b2)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars['params'], g_batch_stats=g_vars.get('batch_stats', {}),
      g_opt_state=g_tx.init(g_vars['params']),
      d_params=d_vars['params'], d_batch_stats=d_vars.get('batch_stats', {}),
      d_opt_state=d_tx.init(d_vars['params']),
      rng=state_key, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      loss=config.loss, latent_dim=config.latent_dim, noise=config.noise, skip_nonfinite=config.skip_nonfinite,
      label_smoothing=config.label_smoothing, gp_weight=config.gp_weight, n_critic=config.n_critic)


def _step(state: TrainState, batch: dict[str, Array], axis_name: Optional[str],
          sync_batchnorm: bool) -> tuple[TrainState, dict[str, Array]]:
  """One D update on a real and a fresh fake batch, then one G update. See `train_step`.

  With `axis_name`, this runs per device inside `shard_map` on a slice of the global batch: gradients and metrics
  are averaged over the axis, and BatchNorm normalizes with global statistics when `sync_batchnorm`.
  """
  images = batch['image']
  local_batch = images.shape[0]
  bn_axis = axis_name if sync_batchnorm else None
  generator = state.generator.clone(bn_axis_name=bn_axis)
  discriminator = state.discriminator.clone(bn_axis_name=bn_axis)
  gan_loss = losses.get(state.loss)
  pmean = (lambda x: jax.lax.pmean(x, axis_name)) if axis_name else (lambda x: x)

  # Noise for the whole global batch from one key, each device taking its slice: the result does not depend on
  # how many devices share the batch.
  z_key, g_dropout_key, d_dropout_key, gp_key = jax.random.split(jax.random.fold_in(state.rng, state.step), 4)
  num_devices = jax.lax.psum(1, axis_name) if axis_name else 1
  z = sample_noise(z_key, (local_batch * num_devices, state.latent_dim), state.noise)
  if axis_name:
    device = jax.lax.axis_index(axis_name)
    z = jax.lax.dynamic_slice_in_dim(z, device * local_batch, local_batch)
    # Dropout masks and penalty interpolations differ per device (they cover different images).
    g_dropout_key, d_dropout_key, gp_key = (
        jax.random.fold_in(k, device) for k in (g_dropout_key, d_dropout_key, gp_key))

  # The generator runs forward once; its VJP then serves the G update (the fake batch is the same in both updates).
  def g_forward(g_params):
    fake, updates = generator.apply({'params': g_params, 'batch_stats': state.g_batch_stats}, z, train=True,
                                    mutable=['batch_stats'], rngs={'dropout': g_dropout_key})
    return fake, updates['batch_stats']

  fake, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

  def d_apply(d_params, d_batch_stats, x, call):
    # `call` numbers D's applications in this step so each gets its own dropout mask.
    logits, updates = discriminator.apply(
        {'params': d_params, 'batch_stats': d_batch_stats}, x, train=True, mutable=['batch_stats'],
        rngs={'dropout': jax.random.fold_in(d_dropout_key, call)})
    return logits, updates['batch_stats']

  def d_loss_fn(d_params):
    real_logits, d_bs = d_apply(d_params, state.d_batch_stats, images, 0)
    fake_logits, d_bs = d_apply(d_params, d_bs, jax.lax.stop_gradient(fake), 1)
    loss = gan_loss.d(real_logits, fake_logits, state.label_smoothing)
    if gan_loss.gradient_penalty:
      critic = lambda x: d_apply(d_params, d_bs, x, 2)[0]
      loss += state.gp_weight * losses.gradient_penalty(critic, images, jax.lax.stop_gradient(fake), gp_key)
    return loss, (real_logits, fake_logits, d_bs)

  (d_loss, (real_logits, fake_logits, d_batch_stats)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = state.d_tx.update(pmean(d_grads), state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    logits, d_bs = d_apply(d_params, d_batch_stats, fake, 3)
    return gan_loss.g(logits), d_bs

  (g_loss, d_batch_stats), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  g_updates, g_opt_state = state.g_tx.update(pmean(g_grads), state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)
  if state.n_critic > 1:
    # G learns on every n_critic-th step only; D on every step (each with its own real batch).
    g_turn = (state.step + 1) % state.n_critic == 0
    g_params, g_batch_stats, g_opt_state = jax.tree.map(
        lambda new, old: jnp.where(g_turn, new, old), (g_params, g_batch_stats, g_opt_state),
        (state.g_params, state.g_batch_stats, state.g_opt_state))

  if axis_name and not sync_batchnorm:
    # Per-device statistics differ; the carried running averages are their mean so every device holds the same.
    g_batch_stats, d_batch_stats = pmean((g_batch_stats, d_batch_stats))

  metrics = {
      'd_loss': d_loss,
      'g_loss': g_loss,
      'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
      'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
      'd_acc_real': jnp.mean((real_logits > 0).astype(jnp.float32)),
      'd_acc_fake': jnp.mean((fake_logits < 0).astype(jnp.float32)),
  }
  new_state = state.replace(
      step=state.step + 1, g_params=g_params, g_batch_stats=g_batch_stats, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_batch_stats, d_opt_state=d_opt_state)
  metrics = pmean(metrics)
  if state.skip_nonfinite:
    # The losses and gradients are averaged over devices, so every device takes the same decision.
    finite = jnp.isfinite(metrics['d_loss'] + metrics['g_loss'])
    for grad in jax.tree.leaves((pmean(d_grads), pmean(g_grads))):
      finite &= jnp.all(jnp.isfinite(grad))
    kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
    new_state = kept.replace(step=state.step + 1)
    # Skipped steps report zeros, so averages over a window stay finite; `skipped` counts them.
    metrics = jax.tree.map(lambda m: jnp.where(finite, m, 0.0), metrics)
    metrics['skipped'] = 1.0 - finite.astype(jnp.float32)
  return new_state, metrics


def train_step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One GAN training step: a D update, then a G update through the updated D. Pure; jit it.

  Args:
    state: the carried `TrainState`.
    batch: `{'image': float32 [B, H, W, C]}` in the generator's output range ([-1, 1] for tanh generators).

  Returns:
    `(new_state, metrics)`; metrics are float32 scalars: `d_loss`, `g_loss`, `d_real` = mean D(x) and `d_fake` =
    mean D(G(z)) (sigmoid of the logits, before the D update), `d_acc_real`, `d_acc_fake` (D's accuracy on each).
  """
  return _step(state, batch, axis_name=None, sync_batchnorm=False)


def generate(state: TrainState, config: ml_collections.ConfigDict, z: Array) -> Array:
  """Images from noise `z: float32 [N, latent_dim]` -> `float32 [N, H, W, C]` in the generator's range. Pure.

  `config.model.sample_use_batch_stats` picks BatchNorm's normalization: the statistics of this batch of z (as the
  original TensorFlow DCGAN samples), or the running averages gathered in training.
  """
  variables = {'params': state.g_params, 'batch_stats': state.g_batch_stats}
  if config.model.sample_use_batch_stats:
    images, _ = state.generator.apply(variables, z, train=True, deterministic=True, mutable=['batch_stats'])
    return images
  return state.generator.apply(variables, z, train=False)


@functools.lru_cache(maxsize=None)
def make_parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                             device_data: bool = False):
  """`train_step` data-parallel over `mesh` (axis 'data'), several steps per call, compiled once, state donated.

  We use `shard_map` under `jit` rather than `pmap`: the state stays one replicated global array (no stacking and
  unstacking per device), the batch is one array sharded along its batch axis, and BatchNorm can average its
  statistics over the devices (`sync_batchnorm`) or not, which plain sharding propagation cannot express.

  The returned function runs K steps in one call (K is the leading axis of its last input), so small models are
  not dominated by per-call dispatch:
    * `device_data=False`: `fn(state, images)`, `images: uint8 [K, B, H, W, C]` sharded over 'data' on axis 1.
    * `device_data=True`: `fn(state, data, indices)`, `data: uint8 [N, H, W, C]` replicated on every device (put
      there once), `indices: int32 [K, B]` sharded over 'data' on axis 1; each device gathers its own images, so
      no pixels cross the host-device boundary per step.
  Images are converted to `data_range` on the device. Returns `(state, metrics)`, each metric float32 `[K]`.
  Cached: runs in one process with equal settings share one compiled function.
  """
  from dcgan_jax import input_pipeline  # pylint: disable=g-import-not-at-top  (keeps tf out of train_step users)

  def run(state, *inputs):
    data, xs = inputs if device_data else (None, inputs[0])

    def body(state, x):
      images = data[x] if device_data else x
      batch = {'image': input_pipeline.to_float(images, data_range)}
      return _step(state, batch, axis_name='data', sync_batchnorm=sync_batchnorm)

    # No while loop: inside one (even a length-1 or unrolled scan) XLA:CPU compiles the convolutions' weight
    # gradients without their fast kernels and a DCGAN step ran ~25x slower (benchmarks/throughput.py). A Python
    # loop traces the K steps one after another; it costs compile time only.
    metrics = []
    for k in range(xs.shape[0]):
      state, m = body(state, xs[k])
      metrics.append(m)
    return state, jax.tree.map(lambda *ms: jnp.stack(ms), *metrics)

  P = jax.sharding.PartitionSpec
  batch_spec = P(None, 'data')
  in_specs = (P(), P(), batch_spec) if device_data else (P(), batch_spec)
  # check_vma=False: gradients are per-device values averaged explicitly with pmean (the classic pmap semantics).
  sharded = jax.shard_map(run, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded, donate_argnums=0)


@functools.lru_cache(maxsize=None)
def _sampler(use_batch_stats: bool):
  config = ml_collections.ConfigDict({'model': {'sample_use_batch_stats': use_batch_stats}})
  return jax.jit(lambda state, z: generate(state, config, z))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains per `config`, writing samples, scalars and checkpoints to `workdir`; resumes from its checkpoints.

  Outputs in `workdir`: `samples/step_NNNNNNN.png` (grids from fixed noise), TensorBoard event files,
  `checkpoints/STEP/` (orbax), `config.json` (the resolved config). Returns the final state. The loop itself lives
  in `dcgan_jax.loop` (imported here, lazily, so that research code importing `train_step` does not pay for
  TensorFlow and the writers).
  """
  from dcgan_jax import loop  # pylint: disable=g-import-not-at-top
  return loop.run(config, workdir)


def discriminate(state: TrainState, images: Array) -> Array:
  """D's probability that each image is real: `images: float32 [N, H, W, C]` in the data range -> float32 [N] in
  [0, 1] (sigmoid of the logits; BatchNorm with running averages, no dropout). Pure."""
  logits = state.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_batch_stats}, images,
                                     train=False)
  return jax.nn.sigmoid(logits)
