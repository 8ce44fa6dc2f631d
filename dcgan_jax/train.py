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
import math
import os
import time
from typing import Any, Optional

from absl import logging
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dcgan_jax import errors
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
      loss=config.loss, latent_dim=config.latent_dim, noise=config.noise)


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
  z_key, g_dropout_key, d_dropout_key = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
  num_devices = jax.lax.psum(1, axis_name) if axis_name else 1
  z = sample_noise(z_key, (local_batch * num_devices, state.latent_dim), state.noise)
  if axis_name:
    device = jax.lax.axis_index(axis_name)
    z = jax.lax.dynamic_slice_in_dim(z, device * local_batch, local_batch)
    # Dropout masks differ per device (they cover different images).
    g_dropout_key, d_dropout_key = (jax.random.fold_in(k, device) for k in (g_dropout_key, d_dropout_key))

  # The generator runs forward once; its VJP then serves the G update (the fake batch is the same in both updates).
  def g_forward(g_params):
    fake, updates = generator.apply({'params': g_params, 'batch_stats': state.g_batch_stats}, z, train=True,
                                    mutable=['batch_stats'], rngs={'dropout': g_dropout_key})
    return fake, updates['batch_stats']

  fake, g_vjp, g_batch_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

  def d_apply(d_params, d_batch_stats, x):
    logits, updates = discriminator.apply({'params': d_params, 'batch_stats': d_batch_stats}, x, train=True,
                                          mutable=['batch_stats'], rngs={'dropout': d_dropout_key})
    return logits, updates['batch_stats']

  def d_loss_fn(d_params):
    real_logits, d_bs = d_apply(d_params, state.d_batch_stats, images)
    fake_logits, d_bs = d_apply(d_params, d_bs, jax.lax.stop_gradient(fake))
    return gan_loss.d(real_logits, fake_logits), (real_logits, fake_logits, d_bs)

  (d_loss, (real_logits, fake_logits, d_batch_stats)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = state.d_tx.update(pmean(d_grads), state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    logits, d_bs = d_apply(d_params, d_batch_stats, fake)
    return gan_loss.g(logits), d_bs

  (g_loss, d_batch_stats), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  g_updates, g_opt_state = state.g_tx.update(pmean(g_grads), state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

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
  return new_state, pmean(metrics)


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
    images, _ = state.generator.apply(variables, z, train=True, mutable=['batch_stats'])
    return images
  return state.generator.apply(variables, z, train=False)


@functools.lru_cache(maxsize=None)
def make_parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                             device_data: bool = False):
  """`train_step` data-parallel over `mesh` (axis 'data'), several steps per call, compiled once, state donated.

  We use `shard_map` under `jit` rather than `pmap`: the state stays one replicated global array (no stacking and
  unstacking per device), the batch is one array sharded along its batch axis, and BatchNorm can average its
  statistics over the devices (`sync_batchnorm`) or not, which plain sharding propagation cannot express.

  The returned function runs K steps in one call (`lax.scan`; K is the leading axis of its last input), so small
  models are not dominated by per-call dispatch:
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

    return jax.lax.scan(body, state, xs)

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


def _chunks(start: int, total: int, per_call: int):
  """Yields `(first_step, num_steps)` covering [start, total) on a grid of multiples of `per_call`.

  The grid is anchored at step 0, so a run resumed from a checkpoint (written at a chunk boundary) cuts its steps
  exactly as the uninterrupted run did.
  """
  step = start
  while step < total:
    size = min(per_call - step % per_call, total - step)
    yield step, size
    step += size


def _format_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains per `config`, writing samples, scalars and checkpoints to `workdir`; resumes from its checkpoints.

  Outputs in `workdir`: `samples/step_NNNNNNN.png` (grids from fixed noise), TensorBoard event files,
  `checkpoints/STEP/` (orbax), `config.json` (the resolved config). Returns the final state.
  """
  # Imported here so that research code importing `train_step` does not pay for TensorFlow.
  from clu import metric_writers  # pylint: disable=g-import-not-at-top
  from dcgan_jax import checkpointing, config_validation, input_pipeline, visualize  # pylint: disable=g-import-not-at-top

  config_validation.validate(config)
  devices = jax.devices()
  if config.batch_size % len(devices):
    raise errors.ConfigError(
        f'config.batch_size={config.batch_size} does not divide evenly over the {len(devices)} devices; '
        f'use a multiple of {len(devices)}')

  images = input_pipeline.load_images(config.data)
  want = (config.data.image_size, config.data.image_size, config.data.channels)
  if images.shape[1:] != want:
    raise errors.DataError(
        f'dataset {config.data.source}:{config.data.name or config.data.path} has images of shape '
        f'{images.shape[1:]}, the config wants {want} (config.data.image_size, config.data.channels)')
  batcher = input_pipeline.EpochBatcher(images, config.batch_size, config.seed)
  steps_per_epoch = batcher.steps_per_epoch
  total_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
  data_range = models.data_range(config)

  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if is_main:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)

  mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data'))

  state = create_train_state(config, jax.random.key(config.seed))
  logging.info('Generator: %d parameters, discriminator: %d parameters',
               models.count_params(state.g_params), models.count_params(state.d_params))
  state = jax.device_put(state, replicated)
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), config.keep_checkpoints)
  restored = checkpointer.restore(state)
  if restored is not None:
    state = restored
  start_step = int(jax.device_get(state.step))
  if start_step:
    logging.info('Resuming at step %d (epoch %d)', start_step, start_step // steps_per_epoch + 1)
  if start_step >= total_steps:
    logging.info('Already trained %d of %d steps; raise --config.num_epochs to train on.', start_step, total_steps)
    checkpointer.close()
    return state

  # Small datasets live on the device as uint8 and each step gathers its batch there; large ones are gathered on
  # the host (a background thread) and sent per call. Both follow the batcher's order, so they train identically.
  device_data = images.nbytes <= config.data.max_device_bytes
  p_train_step = make_parallel_train_step(mesh, config.model.sync_batchnorm, data_range, device_data)
  if device_data:
    data_on_device = jax.device_put(images, replicated)
  else:
    host_batches = batcher.iterate(start_step, total_steps - start_step)
  sample_fn = _sampler(config.model.sample_use_batch_stats)
  fixed_z = sample_noise(jax.random.fold_in(jax.random.key(config.seed), 1),
                         (config.num_samples, config.latent_dim), config.noise)

  def write_samples(step):
    if is_main:
      path = os.path.join(workdir, 'samples', f'step_{step:07d}.png')
      visualize.save_grid(path, np.asarray(jax.device_get(sample_fn(state, fixed_z))), data_range)
      logging.info('Wrote %s', path)

  logging.info('Training %d steps (%d per epoch, batch %d over %d devices, %d per call, data on %s) from step %d',
               total_steps, steps_per_epoch, config.batch_size, len(devices), config.steps_per_call,
               'device' if device_data else 'host', start_step)
  metric_sums, window_steps, all_finite = None, 0, jnp.bool_(True)
  window_start = time.time()
  for first, size in _chunks(start_step, total_steps, config.steps_per_call):
    if device_data:
      indices = np.stack([batcher.indices(s) for s in range(first, first + size)])
      state, metrics = p_train_step(state, data_on_device, jax.device_put(indices, batch_sharding))
    else:
      batches = np.stack([next(host_batches)[1] for _ in range(size)])
      state, metrics = p_train_step(state, jax.device_put(batches, batch_sharding))
    # Summed on device: no host transfer until the progress line.
    sums = jax.tree.map(jnp.sum, metrics)
    metric_sums = sums if metric_sums is None else jax.tree.map(jnp.add, metric_sums, sums)
    all_finite = all_finite & jnp.isfinite(sums['d_loss'] + sums['g_loss'])
    window_steps += size
    done = first + size
    crossed = lambda period: period > 0 and done // period > first // period  # pylint: disable=cell-var-from-loop
    if first == start_step:
      jax.block_until_ready(metrics)
      logging.info('First call (including compilation) took %.1f s', time.time() - window_start)
      window_start, metric_sums, window_steps = time.time(), None, 0
    if crossed(config.log_every_steps) or done == total_steps:
      if window_steps:
        means = {k: float(v) / window_steps for k, v in jax.device_get(metric_sums).items()}
        _check_finite(means, done, checkpointer)
        elapsed = time.time() - window_start
        images_per_s = window_steps * config.batch_size / max(elapsed, 1e-9)
        eta = (total_steps - done) * elapsed / window_steps
        writer.write_scalars(done, {**means, 'images_per_second': images_per_s})
        logging.info(
            'step %d/%d epoch %d: d_loss %.4f g_loss %.4f D(x) %.3f D(G(z)) %.3f, %.0f img/s, ETA %s',
            done, total_steps, (done - 1) // steps_per_epoch + 1, means['d_loss'], means['g_loss'],
            means['d_real'], means['d_fake'], images_per_s, _format_time(eta))
        metric_sums, window_steps, window_start = None, 0, time.time()
    end_of_epoch = crossed(steps_per_epoch)
    if end_of_epoch or done == total_steps or crossed(config.sample_every_steps):
      write_samples(done)
    if end_of_epoch or done == total_steps or crossed(config.checkpoint_every_steps):
      if not bool(all_finite):  # Never save a diverged state over the last good one.
        raise errors.TrainingDivergedError(
            f'a loss became NaN or Inf before step {done}; training stopped. The newest good checkpoint '
            f'(step {checkpointer.latest_step()}) in {checkpointer.directory} is kept.')
      checkpointer.save(state)
  checkpointer.close()
  writer.flush()
  logging.info('Done: %d steps; checkpoints in %s', total_steps, checkpointer.directory)
  return state


def _check_finite(means: dict[str, float], step: int, checkpointer) -> None:
  bad = [k for k, v in means.items() if not math.isfinite(v)]
  if bad:
    checkpointer.wait()
    raise errors.TrainingDivergedError(
        f'non-finite {", ".join(bad)} at step {step}; training stopped. The newest good checkpoint '
        f'(step {checkpointer.latest_step()}) in {checkpointer.directory} is kept.')
