"""The training loop behind `train.train_and_evaluate`: data, compiled steps, outputs, checkpoints, signals.

What it guarantees (see the README's "Resuming and failures"):
  * A restart on the same workdir continues from the newest complete checkpoint, bit-identically to a run never
    interrupted: the data order depends only on (seed, epoch), the noise on (seed, step), and steps are fused on a
    grid anchored at step 0.
  * SIGTERM / SIGINT finish the current call, write a checkpoint and return normally (exit status 0).
  * A NaN/Inf loss, parameter or optimizer state stops the run naming the step (with `skip_nonfinite`, such steps
    are skipped instead); a checkpoint is written only from a state whose parameters and optimizer states are all
    finite.
  * A failure to write a sample image or an event file is logged and training goes on; a failure to write a
    checkpoint stops the run (`errors.CheckpointError` with the path and the OS error).
"""

import contextlib
import functools
import hashlib
import os
import signal
import threading
import time
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax import checkpointing
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import input_pipeline
from dcgan_jax import models
from dcgan_jax import monitor as monitor_lib
from dcgan_jax import schedules
from dcgan_jax import train
from dcgan_jax import visualize
from dcgan_jax import workdir as workdir_lib


def _format_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


@contextlib.contextmanager
def _stop_requests():
  """Collects SIGTERM/SIGINT into an Event for the duration (main thread only; elsewhere signals stay as they are)."""
  requested = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield requested
    return
  previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

  def handler(signum, frame):
    del frame
    logging.warning('Received %s: stopping after the current step.', signal.Signals(signum).name)
    requested.set()

  for sig in previous:
    signal.signal(sig, handler)
  try:
    yield requested
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


_LABELS = (('d_loss', 'd_loss', 4), ('g_loss', 'g_loss', 4), ('d_real', 'D(x)', 3), ('d_fake', 'D(G(z))', 3),
           ('g_fool_rate', 'G fools D', 2), ('d_heldout_accuracy', 'D held-out accuracy', 2))


def _format_metrics(means: dict[str, float]) -> str:
  """The progress line's metrics, those present in this window (steps of one side report only that side's)."""
  return ' '.join(f'{label} {means[key]:.{digits}f}' for key, label, digits in _LABELS if key in means)


def _log_turn_end(kind, metrics: dict, counters: dict[str, int], step: int, turn_steps: int) -> bool:
  """Adaptive schedule: logs one line when a side's turn has just ended (its length and why); returns whether.

  `counters`: the state's `phase`, `phase_steps`, `d_updates` and `g_updates` after the step, as ints.
  """
  phase, phase_steps = counters['phase'], counters['phase_steps']
  if phase_steps or phase == (kind.check == 'd_accuracy'):
    return False  # The turn goes on.
  side, rate_name = ('D', 'd_heldout_accuracy') if kind.check == 'd_accuracy' else ('G', 'g_fool_rate')
  rate = float(metrics[rate_name][-1])
  count = counters['d_updates' if side == 'D' else 'g_updates']
  reason = f'{rate_name} {rate:.2f} >= {kind.target:.2f}' if rate >= kind.target else f'cap of {kind.cap} steps'
  logging.info('step %d: %s turn of %d steps over (%s); %d %s updates so far', step, side, turn_steps, reason,
               count, side)
  return True


def _best_effort(what: str, fn, *args, **kwargs) -> None:
  """Runs an output write; a failure (full disk, permissions) is logged and training goes on."""
  try:
    fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not write %s (%s: %s); training goes on.', what, type(e).__name__, e)


def _global(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """A global array from a host value that every process computed identically; each process fills only its own
  devices' shards (so in a multi-process run no process needs another's data)."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _local(tree):
  """This process's copy of replicated global arrays: safe to read or combine eagerly in a multi-process run."""
  return jax.tree.map(lambda a: a.addressable_data(0), tree)


def _counters(state: train.TrainState) -> dict[str, int]:
  """The schedule counters of `state` on the host: four scalars cross over, not the whole state."""
  names = ('phase', 'phase_steps', 'd_updates', 'g_updates')
  return {name: int(value) for name, value in zip(names, _local([getattr(state, n) for n in names]))}


def _fingerprint(state: train.TrainState) -> str:
  """A short hash of all parameters: equal on every process of a run, and between bit-identical runs."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(_local((state.g_params, state.d_params))):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def _resolve_data_source(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` with `data.source='auto'` replaced by the source it resolves to (recorded so in `config.json`)."""
  data = input_pipeline.resolve_source(config.data)
  if data is config.data:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data = data
  return config


def _has_checkpoint(workdir: str) -> bool:
  directory = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))


def run(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool = False) -> train.TrainState:
  """See `train.train_and_evaluate`. Checks what can be checked cheaply first: the config, the workdir (its lock
  and, for a resume, the config changes), then loads data and trains."""
  config_validation.validate(config)
  if not workdir:
    raise errors.WorkdirError('--workdir is empty; pass the directory for checkpoints and outputs')
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise errors.WorkdirError(f'--workdir={workdir} is a file, not a directory; pass a directory (it is created '
                              'if missing)')
  is_main = jax.process_index() == 0
  with workdir_lib.lock(workdir) if is_main else contextlib.nullcontext():
    # Compared as config.json records it: with data.source='auto' resolved.
    config = _resolve_data_source(config)
    history = workdir_lib.check_resume(workdir, config, _has_checkpoint(workdir), allow_config_change)
    return _train(config, workdir, history)


def _train(config: ml_collections.ConfigDict, workdir: str, history: list) -> train.TrainState:
  """The run, once the workdir is held; `history` goes into config.json once the resume checks have passed."""
  from clu import metric_writers  # pylint: disable=g-import-not-at-top  (pulls in TensorFlow)

  run_start = time.time()
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
  all_images, heldout = images, None
  if config.schedule == 'adaptive':
    # D's accuracy is judged on real images it never trains on.
    images, heldout = schedules.hold_out(images, config.batch_size, config.seed)
  batcher = input_pipeline.EpochBatcher(images, config.batch_size, config.seed)
  schedule = schedules.Schedule(config, batcher.steps_per_epoch)
  steps_per_epoch = schedule.steps_per_epoch
  total_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * steps_per_epoch
  # At least one evaluation per epoch, so that short runs still draw a curve.
  eval_period = min(config.eval_every_steps, steps_per_epoch) if config.eval_every_steps > 0 else 0
  data_range = models.data_range(config)

  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)

  mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data'))

  sample_fn = jax.jit(functools.partial(train.generate,
                                        use_batch_stats=bool(config.model.sample_use_batch_stats)))
  # Before the checkpointer: reading a TFDS dataset's labels under tfds.testing.mock_data redirects the file system
  # for a moment, which must not meet orbax's background threads.
  monitor = monitor_lib.Monitor(config, workdir, all_images, sample_fn, lambda x: _global(x, replicated), writer)

  state = train.create_train_state(config, jax.random.key(config.seed))
  logging.info('Generator: %d parameters, discriminator: %d parameters',
               models.count_params(state.g_params), models.count_params(state.d_params))
  state = jax.tree.map(lambda x: _global(x, replicated), state)
  checkpointer = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), config.keep_checkpoints)
  restored = checkpointer.restore(state)
  if restored is not None:
    # The config's hyperparameters win over the checkpoint's (a resume may change the learning rate).
    state = train.with_hyperparameters(restored, state)
  start_step = int(_local(state.step))
  if start_step and not schedule.dynamic and int(_local(state.d_updates)) != schedule.d_updates_before(start_step):
    raise errors.CheckpointError(
        f'the checkpoint at step {start_step} in {checkpointer.directory} made {int(_local(state.d_updates))} D '
        f'updates, but config.schedule={config.schedule!r} makes {schedule.d_updates_before(start_step)} by then: '
        'it was written with another schedule or batch size; resume with that config or use a new --workdir')
  if is_main:  # Only now: a refused resume must leave the run's record as it was.
    workdir_lib.write_record(workdir, config, history)
  if start_step:
    logging.info('Resuming at step %d (epoch %d)', start_step, start_step // steps_per_epoch + 1)
  if start_step >= total_steps:
    logging.info('Already trained %d of %d steps; raise --config.num_epochs to train on.', start_step, total_steps)
    checkpointer.close()
    return state

  # Small datasets live on the device as uint8 and each step gathers its batch there; for large ones each call's
  # images are gathered on the host and sent. Both follow the batcher's order, so they train identically.
  device_data = isinstance(images, np.ndarray) and images.nbytes <= config.data.max_device_bytes  # Not streamed.
  step_fns = {kind: train.make_parallel_train_step(mesh, config.model.sync_batchnorm, data_range, device_data, kind)
              for kind in schedule.kinds()}
  if device_data:
    data_on_device = _global(images, replicated)
  if heldout is not None:
    heldout_on_device = _global(heldout, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  fixed_z = _global(train.sample_noise(jax.random.fold_in(jax.random.key(config.seed), 1),
                                       (config.num_samples, config.latent_dim), config.noise), replicated)

  discriminate = jax.jit(train.discriminate)

  def write_samples(step):
    fakes = sample_fn(state, fixed_z)  # Every process takes part in the computation; one writes.
    scores = discriminate(state, fakes) if config.annotate_samples else None
    if is_main:
      path = os.path.join(workdir, 'samples', f'step_{step:07d}.png')
      _best_effort(f'sample grid {path}', visualize.save_grid, path, np.asarray(_local(fakes)), data_range)
      if scores is not None:
        scored = visualize.annotate_scores(np.asarray(_local(fakes)), np.asarray(_local(scores)), data_range)
        _best_effort('scored grid', visualize.save_image,
                     os.path.join(workdir, 'samples', f'scored_{step:07d}.png'), scored)
      logging.info('Wrote samples %s', path)

  if start_step == 0:
    monitor.evaluate(0, state)  # The untrained generator's scores: the baseline the curves fall from.
  if start_step == 0:
    # Once, at the start: what the generator is up against. (Every process runs the computation; one writes.)
    fakes = sample_fn(state, fixed_z)
    if is_main:
      real = input_pipeline.to_float(batcher.batch(0)[:config.num_samples], data_range)
      _best_effort('real_vs_fake.png', visualize.save_real_vs_fake, os.path.join(workdir, 'real_vs_fake.png'),
                   real, np.asarray(_local(fakes)), data_range)

  def stop_if_diverged():
    bad = int(first_bad_step)
    if bad >= 0:
      checkpointer.wait()
      latest = checkpointer.latest_step()
      kept = (f'the newest good checkpoint (step {latest}) in {checkpointer.directory} is kept' if latest is not None
              else f'no checkpoint was written to {checkpointer.directory}')
      raise errors.TrainingDivergedError(
          f'a loss, parameter or optimizer state became NaN or Inf at step {bad}; training stopped and {kept}. Lower '
          'the learning rates, or set --config.skip_nonfinite=True to skip such steps')

  logging.info('Training %d steps (%d per epoch, schedule %s, batch %d over %d devices, %d per call, data on %s) '
               'from step %d',
               total_steps, steps_per_epoch, config.schedule, config.batch_size, len(devices), config.steps_per_call,
               'device' if device_data else 'host', start_step)
  # Per-metric sums and step counts over the progress window (steps of one side report only that side's metrics).
  metric_sums, metric_counts, window_steps = {}, {}, 0
  # The first step (1-based) whose loss was not finite, or -1; tracked on device so no step waits for the host.
  first_bad_step = jnp.int32(-1)
  window_start = time.time()
  turn_steps = int(_local(state.phase_steps))  # Steps of the adaptive schedule's current turn.
  counters = None
  with checkpointer.finishing_writes(), _stop_requests() as stop_requested:
    for first, size in schedule.chunks(start_step, total_steps, config.steps_per_call):
      if schedule.dynamic:
        # The counters read after the previous step (or from the restored state at the start).
        if counters is None:
          counters = _counters(state)
        kind, first_batch = schedule.kind(first, counters['phase']), counters['d_updates']
      else:
        kind, first_batch = schedule.kind(first), schedule.d_updates_before(first)
      # The global order of this call's batches: int32 [size * kind.rows, batch_size], the same on every process.
      indices = np.stack([batcher.indices(b) for b in schedules.batch_numbers(kind, size, first_batch)])
      if device_data:
        inputs = (data_on_device, _global(indices, batch_sharding))
      else:
        # Each process gathers the images of its own devices' slices only. G-only steps read no real images: their
        # rows are zeros, so nothing is gathered or (for a streamed folder) decoded for them.
        def gather(index, rows=indices, read=kind.d_steps > 0):
          picked = rows[index[:2]]
          return images[picked] if read else np.zeros(picked.shape + images.shape[1:], np.uint8)

        inputs = (jax.make_array_from_callback(indices.shape + images.shape[1:], batch_sharding, gather),)
      if kind.check == 'd_accuracy':
        inputs += (heldout_on_device,)
      state, metrics = step_fns[kind](state, *inputs)
      metrics = _local(metrics)
      if schedule.dynamic:
        turn_steps += size
        counters = _counters(state)
        if _log_turn_end(kind, metrics, counters, first + size, turn_steps):
          turn_steps = 0
      # Non-finite parameters or optimizer states always count (skip_nonfinite keeps the state finite); non-finite
      # losses only when steps are not skipped.
      bad = metrics.pop('all_finite') < 1
      if not config.skip_nonfinite:
        bad |= ~jnp.isfinite(sum(metrics.values()))
      first_bad_step = jnp.where((first_bad_step < 0) & bad.any(), first + 1 + jnp.argmax(bad), first_bad_step)
      # Summed on device: no host transfer until the progress line.
      for k, v in metrics.items():
        metric_sums[k] = metric_sums[k] + jnp.sum(v) if k in metric_sums else jnp.sum(v)
        metric_counts[k] = metric_counts.get(k, 0) + size
      window_steps += size
      done = first + size
      crossed = lambda period: period > 0 and done // period > first // period  # pylint: disable=cell-var-from-loop
      if first == start_step:
        jax.block_until_ready(metrics)
        logging.info('First call (including compilation) took %.1f s', time.time() - window_start)
        window_start, metric_sums, metric_counts, window_steps = time.time(), {}, {}, 0
      if (crossed(config.log_every_steps) or done == total_steps) and window_steps:
        stop_if_diverged()
        elapsed = max(time.time() - window_start, 1e-9)
        means = {k: float(v) / metric_counts[k] for k, v in metric_sums.items()}
        updates = {k: means.pop(k) * metric_counts[k] for k in ('d_updates', 'g_updates')}
        skipped = means.pop('skipped', 0.0) * window_steps
        # Real images through D per second (G-only steps read none).
        images_per_s = updates['d_updates'] * config.batch_size / elapsed
        eta = (total_steps - done) * elapsed / window_steps
        _best_effort('scalars', writer.write_scalars, done, {
            **means, **updates, 'images_per_second': images_per_s, 'steps_per_second': window_steps / elapsed})
        monitor.record(done, means)
        logging.info('step %d/%d epoch %d: %s; updates D %d G %d; %.0f img/s, %.2f steps/s, ETA %s%s',
                     done, total_steps, (done - 1) // steps_per_epoch + 1, _format_metrics(means),
                     updates['d_updates'], updates['g_updates'], images_per_s, window_steps / elapsed,
                     _format_time(eta), f', {skipped:.0f} non-finite steps skipped' if skipped else '')
        metric_sums, metric_counts, window_steps, window_start = {}, {}, 0, time.time()
      end_of_epoch = crossed(steps_per_epoch)
      if end_of_epoch or done == total_steps or crossed(config.sample_every_steps):
        write_samples(done)
      if done == total_steps or crossed(eval_period):
        stop_if_diverged()
        monitor.evaluate(done, state)
      stopping = stop_requested.is_set()
      if (crossed(steps_per_epoch * config.checkpoint_every_epochs) or done == total_steps
          or crossed(config.checkpoint_every_steps) or stopping):
        stop_if_diverged()  # Never write a diverged state over the last good one.
        checkpointer.save(state)
      if stopping:
        checkpointer.close()
        monitor.finish()
        _best_effort('event file', writer.flush)
        logging.warning('Stopped at step %d of %d on request; checkpoint written to %s. Run the same command '
                        'to resume.', done, total_steps, checkpointer.directory)
        return state
  checkpointer.close()
  monitor.finish()
  _best_effort('event file', writer.flush)
  logging.info('Done: %d steps in %s of wall-clock time (this run); checkpoints in %s; parameter fingerprint %s',
               total_steps, _format_time(time.time() - run_start), checkpointer.directory, _fingerprint(state))
  return state
