"""The training loop, `train_and_evaluate`: data, compiled steps, outputs, checkpoints, signals.

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
import json
import os
import signal
import threading
import time
from typing import Optional, Sequence
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dcgan_jax.trainer import besteffort
from dcgan_jax.trainer import checkpointing
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax.data import input_pipeline
from dcgan_jax.ops import onednn
from dcgan_jax import models
from dcgan_jax.trainer import monitor as monitor_lib
from dcgan_jax.trainer import schedules
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import parallel
from dcgan_jax import train_state
from dcgan_jax import visualize
from dcgan_jax.trainer import workdir as workdir_lib


# A class-conditional run's class names, in index order (`write_classes`).
CLASSES_FILE = 'classes.json'


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


def _global(x: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """A global array from a host value that every process computed identically; each process fills only its own
  devices' shards (so in a multi-process run no process needs another's data)."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def _local(tree):
  """This process's copy of replicated global arrays: safe to read or combine eagerly in a multi-process run."""
  return jax.tree.map(lambda a: a.addressable_data(0), tree)


def _counters(state: train_state.TrainState) -> dict[str, int]:
  """The schedule counters of `state` on the host: four scalars cross over, not the whole state."""
  names = ('phase', 'phase_steps', 'd_updates', 'g_updates')
  return {name: int(value) for name, value in zip(names, _local([getattr(state, n) for n in names]))}


def _fingerprint(state: train_state.TrainState) -> str:
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


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       allow_config_change: bool = False) -> train_state.TrainState:
  """Trains per `config`, writing samples, scalars and checkpoints to `workdir`; resumes from its checkpoints.

  Checks what can be checked cheaply first: the config, the workdir (one run per workdir: a lock; a second run
  raises `errors.WorkdirBusyError`) and, for a resume, the config changes (a change of a field that breaks exact
  resume, `workdir.EXACT_RESUME_FIELDS`, raises `errors.ConfigError` unless `allow_config_change`; changes are
  recorded in `config.json`'s `history`); then it loads the data and trains in stages (`_Run`).

  Outputs in `workdir`: `samples/step_NNNNNNN.png` (grids from fixed noise), TensorBoard event files,
  `checkpoints/STEP/` (orbax), `config.json` (the resolved config). Returns the final state.
  """
  config_validation.validate(config)
  # config.cpu_conv for this run's traces ('onednn' that cannot be built: one line, before any data is read).
  with onednn.using(config.cpu_conv):
    return _train(config, workdir, allow_config_change)


def _train(config: ml_collections.ConfigDict, workdir: str, allow_config_change: bool) -> train_state.TrainState:
  """`train_and_evaluate` after the config check: the workdir, the resume check and the staged run."""
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
    trainer = _Run(config, workdir)
    if trainer.restore(history) >= trainer.total_steps:
      logging.info('Already trained %d of %d steps; raise --config.num_epochs to train on.', trainer.start_step,
                   trainer.total_steps)
      trainer.checkpointer.close()
      return trainer.state
    return trainer.run()


def _load_images(config: ml_collections.ConfigDict):
  """The training split, checked against the config's image shape: `(images, labels, class names)`; the labels
  (int32 [N]) and names only for a class-conditional run (`config.num_classes` > 0), else None and ()."""
  labels, names = None, ()
  if config.get('num_classes', 0):
    images, labels, names = input_pipeline.load_labelled(config.data, config.num_classes)
  else:
    images = input_pipeline.load_images(config.data)
  want = (config.data.image_size, config.data.image_size, config.data.channels)
  if images.shape[1:] != want:
    raise errors.DataError(
        f'dataset {config.data.source}:{config.data.name or config.data.path} has images of shape '
        f'{images.shape[1:]}, the config wants {want} (config.data.image_size, config.data.channels)')
  return images, labels, names


def write_classes(workdir: str, names: tuple[str, ...], present: Optional[Sequence[int]] = None) -> None:
  """Records a class-conditional run's class names, in index order, as `workdir/classes.json` (a JSON list), so
  that sampling can take a class by name (`python -m dcgan_jax.cli.sample --label=NAME`) and draw the classes the
  data holds: a class not in `present` (EMNIST letters' unused class 0) is recorded as null."""
  path = os.path.join(workdir, CLASSES_FILE)
  keep = set(range(len(names))) if present is None else {int(k) for k in present}
  with open(path + '.tmp', 'w') as f:
    json.dump([name if k in keep else None for k, name in enumerate(names)], f)
  os.replace(path + '.tmp', path)



class _Run:
  """One training run in stages: set-up (`__init__`: data, devices, outputs), `restore`, `run` (compiled calls
  with periodic hooks: progress line, samples, evaluation, checkpoints, stop requests) and the finish."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str):
    from clu import metric_writers  # pylint: disable=g-import-not-at-top  (pulls in TensorFlow)
    self.run_start = time.time()
    self.config, self.workdir = config, workdir
    self.devices = jax.devices()
    if config.batch_size % len(self.devices):
      raise errors.ConfigError(
          f'config.batch_size={config.batch_size} does not divide evenly over the {len(self.devices)} devices; '
          f'use a multiple of {len(self.devices)}')
    all_images, self.labels, self.class_names = _load_images(config)
    self.images, self.heldout = all_images, None
    if config.schedule == 'adaptive':
      # D's accuracy is judged on real images it never trains on.
      self.images, self.heldout = schedules.hold_out(all_images, config.batch_size, config.seed)
    self.batcher = input_pipeline.EpochBatcher(self.images, config.batch_size, config.seed, self.labels)
    self.num_classes = config.get('num_classes', 0)
    self.schedule = schedules.Schedule(config, self.batcher.steps_per_epoch)
    self.steps_per_epoch = self.schedule.steps_per_epoch
    self.total_steps = (config.num_train_steps if config.num_train_steps > 0
                        else config.num_epochs * self.steps_per_epoch)
    # At least one evaluation per epoch, so that short runs still draw a curve.
    self.eval_period = min(config.eval_every_steps, self.steps_per_epoch) if config.eval_every_steps > 0 else 0
    self.data_range = models.data_range(config)
    os.makedirs(workdir, exist_ok=True)
    self.is_main = jax.process_index() == 0
    self.writer = metric_writers.create_default_writer(workdir, just_logging=not self.is_main)
    self.mesh = jax.sharding.Mesh(np.asarray(self.devices), ('data',))
    self.replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
    self.sample_fn = jax.jit(functools.partial(train.generate,
                                               use_batch_stats=bool(config.model.sample_use_batch_stats)))
    # Before the checkpointer: reading a TFDS dataset's labels under tfds.testing.mock_data redirects the file
    # system for a moment, which must not meet orbax's background threads.
    # The classes the data holds (EMNIST letters: 1..26 of 27): the sample grids' rows and the evaluated classes.
    self.classes = np.unique(self.labels) if self.num_classes else None
    self.monitor = monitor_lib.Monitor(config, workdir, all_images, self.sample_fn, self.to_global, self.writer,
                                       self.classes)
    self.discriminate = jax.jit(train.discriminate)
    # Conditional runs: a per-class grid, one row of num_samples // classes (at least 1) images per class present.
    self.grid_columns = max(1, config.num_samples // len(self.classes)) if self.num_classes else 0
    num_grid = self.grid_columns * len(self.classes) if self.num_classes else config.num_samples
    self.fixed_z = self.to_global(train.sample_noise(jax.random.fold_in(jax.random.key(config.seed), 1),
                                                     (num_grid, config.latent_dim), config.noise))
    self.fixed_labels = ((self.to_global(np.repeat(self.classes.astype(np.int32), self.grid_columns)),)
                         if self.num_classes else ())

  def to_global(self, x) -> jax.Array:
    return _global(x, self.replicated)

  def restore(self, history: list) -> int:
    """Creates the state and restores the newest checkpoint; writes config.json; returns the start step."""
    config = self.config
    state = train_state.create_train_state(config, jax.random.key(config.seed))
    logging.info('Generator: %d parameters, discriminator: %d parameters',
                 models.count_params(state.g_params), models.count_params(state.d_params))
    state = jax.tree.map(self.to_global, state)
    self.checkpointer = checkpointing.Checkpointer(os.path.join(self.workdir, 'checkpoints'),
                                                   config.keep_checkpoints)
    restored = self.checkpointer.restore(state)
    if restored is not None:
      # The config's hyperparameters win over the checkpoint's (a resume may change the learning rate).
      state = train_state.with_hyperparameters(restored, state)
    self.state, self.start_step = state, int(_local(state.step))
    expected = None if self.schedule.dynamic else self.schedule.d_updates_before(self.start_step)
    if self.start_step and expected is not None and int(_local(state.d_updates)) != expected:
      raise errors.CheckpointError(
          f'the checkpoint at step {self.start_step} in {self.checkpointer.directory} made '
          f'{int(_local(state.d_updates))} D updates, but config.schedule={config.schedule!r} makes {expected} by '
          'then: it was written with another schedule or batch size; resume with that config or use a new --workdir')
    if self.is_main:  # Only now: a refused resume must leave the run's record as it was.
      workdir_lib.write_record(self.workdir, config, history)
      if self.num_classes:
        write_classes(self.workdir, self.class_names, self.classes)
    if self.start_step:
      logging.info('Resuming at step %d (epoch %d)', self.start_step, self.start_step // self.steps_per_epoch + 1)
    return self.start_step

  def _compile(self) -> None:
    """The compiled step of each kind the schedule uses, and the data where the steps read it.

    Small datasets live on the device as uint8 and each step gathers its batch there; for large ones each call's
    images are gathered on the host and sent. Both follow the batcher's order, so they train identically.
    """
    images, config = self.images, self.config
    self.device_data = isinstance(images, np.ndarray) and images.nbytes <= config.data.max_device_bytes
    self.step_fns = {kind: parallel.make_parallel_train_step(self.mesh, config.model.sync_batchnorm, self.data_range,
                                                          self.device_data, kind,
                                                          conditional=bool(self.num_classes))
                     for kind in self.schedule.kinds()}
    self.batch_sharding = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec(None, 'data'))
    if self.device_data:
      self.data_on_device = self.to_global(images)
      if self.num_classes:
        self.labels_on_device = self.to_global(self.labels)
    if self.heldout is not None:
      self.heldout_on_device = _global(self.heldout,
                                       jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec('data')))

  def _inputs(self, kind, indices: np.ndarray) -> tuple:
    """The arguments after the state of one call of `kind` on batches `indices` (int32 [rows, batch_size])."""
    if self.device_data:
      labels = (self.labels_on_device,) if self.num_classes else ()
      inputs = (self.data_on_device, *labels, _global(indices, self.batch_sharding))
    else:
      images = self.images

      # Each process gathers the images of its own devices' slices only. G-only steps read no real images: their
      # rows are zeros, so nothing is gathered or (for a streamed folder) decoded for them.
      def gather(index, rows=indices, read=kind.d_steps > 0):
        picked = rows[index[:2]]
        return images[picked] if read else np.zeros(picked.shape + images.shape[1:], np.uint8)

      inputs = (jax.make_array_from_callback(indices.shape + images.shape[1:], self.batch_sharding, gather),)
      if self.num_classes:
        inputs += (_global(self.labels[indices], self.batch_sharding),)
    if kind.check == 'd_accuracy':
      inputs += (self.heldout_on_device,)
    return inputs

  def _write_samples(self, step: int) -> None:
    # Every process takes part in the computation; one writes.
    fakes = self.sample_fn(self.state, self.fixed_z, *self.fixed_labels)
    scores = self.discriminate(self.state, fakes, *self.fixed_labels) if self.config.annotate_samples else None
    if not self.is_main:
      return
    path = os.path.join(self.workdir, 'samples', f'step_{step:07d}.png')
    besteffort.call(f'sample grid {path}', visualize.save_grid, path, np.asarray(_local(fakes)), self.data_range,
                    self.grid_columns)
    if scores is not None:
      scored = visualize.annotate_scores(np.asarray(_local(fakes)), np.asarray(_local(scores)), self.data_range,
                                         self.grid_columns)
      besteffort.call('scored grid', visualize.save_image,
                      os.path.join(self.workdir, 'samples', f'scored_{step:07d}.png'), scored)
    logging.info('Wrote samples %s', path)

  def _first_outputs(self) -> None:
    """At step 0: the untrained generator's scores (the baseline the curves fall from) and, once, what the
    generator is up against. Every process runs the computations; one writes."""
    self.monitor.evaluate(0, self.state)
    fakes = self.sample_fn(self.state, self.fixed_z, *self.fixed_labels)
    if self.is_main:
      real = input_pipeline.to_float(self.batcher.batch(0)[:self.config.num_samples], self.data_range)
      besteffort.call('real_vs_fake.png', visualize.save_real_vs_fake, os.path.join(self.workdir, 'real_vs_fake.png'),
                      real, np.asarray(_local(fakes)), self.data_range)

  def _stop_if_diverged(self, done: int) -> None:
    """Stops the run if a loss so far, or the state after step `done`, is not finite. The state is checked here
    (one reduction over every parameter and optimizer state) rather than in each step, where it would cost ~15% of
    a small model's step; the error then names the steps since the last check."""
    bad = int(self.first_bad_step)
    if bad < 0 and done > self.checked_step:
      if not bool(self.state_finite(self.state)):
        bad = done if done == self.checked_step + 1 else f'{done} (or a step since {self.checked_step + 1})'
      else:
        self.checked_step = done
    if bad != -1:
      checkpointer = self.checkpointer
      checkpointer.wait()
      latest = checkpointer.latest_step()
      kept = (f'the newest good checkpoint (step {latest}) in {checkpointer.directory} is kept' if latest is not None
              else f'no checkpoint was written to {checkpointer.directory}')
      raise errors.TrainingDivergedError(
          f'a loss, parameter or optimizer state became NaN or Inf at step {bad}; training stopped and {kept}. Lower '
          'the learning rates, or set --config.skip_nonfinite=True to skip such steps')

  def run(self) -> train_state.TrainState:
    """Runs the schedule's compiled calls from the start step to the end (or a stop request); returns the state."""
    self._compile()
    if self.start_step == 0:
      self._first_outputs()
    logging.info('Training %d steps (%d per epoch, schedule %s, batch %d over %d devices, %d per call, data on %s) '
                 'from step %d', self.total_steps, self.steps_per_epoch, self.config.schedule, self.config.batch_size,
                 len(self.devices), self.config.steps_per_call, 'device' if self.device_data else 'host',
                 self.start_step)
    self._new_window()
    # The first step (1-based) whose loss was not finite, or -1; tracked on device so no step waits for the host.
    self.first_bad_step = jnp.int32(-1)
    # The state is known finite up to here (a restored checkpoint is checked when read); see `_stop_if_diverged`.
    self.state_finite, self.checked_step = jax.jit(steps.all_finite), self.start_step
    self.turn_steps = int(_local(self.state.phase_steps))  # Steps of the adaptive schedule's current turn.
    self.counters = None
    with self.checkpointer.finishing_writes(), _stop_requests() as stop_requested:
      for first, size in self.schedule.chunks(self.start_step, self.total_steps, self.config.steps_per_call):
        self._account(first, size, self._call(first, size))
        if self._after_call(first, first + size, stop_requested.is_set()):
          return self._finish(stopped_at=first + size)
    return self._finish()

  def _call(self, first: int, size: int) -> dict:
    """One compiled call of `size` steps from step `first`; returns its metrics (this process's copy)."""
    schedule = self.schedule
    if schedule.dynamic:
      # The counters read after the previous step (or from the restored state at the start).
      if self.counters is None:
        self.counters = _counters(self.state)
      kind, first_batch = schedule.kind(first, self.counters['phase']), self.counters['d_updates']
    else:
      kind, first_batch = schedule.kind(first), schedule.d_updates_before(first)
    # The global order of this call's batches: int32 [size * kind.rows, batch_size], the same on every process.
    indices = np.stack([self.batcher.indices(b) for b in schedules.batch_numbers(kind, size, first_batch)])
    self.state, metrics = self.step_fns[kind](self.state, *self._inputs(kind, indices))
    metrics = _local(metrics)
    if schedule.dynamic:
      self.turn_steps += size
      self.counters = _counters(self.state)
      if _log_turn_end(kind, metrics, self.counters, first + size, self.turn_steps):
        self.turn_steps = 0
    return metrics

  def _new_window(self) -> None:
    # Per-metric sums and step counts over the progress window (steps of one side report only that side's).
    self.metric_sums, self.metric_counts, self.window_steps, self.window_start = {}, {}, 0, time.time()

  def _account(self, first: int, size: int, metrics: dict) -> None:
    """Tracks the first step with a non-finite loss and sums the metrics on the device (no host transfer until
    the log). Non-finite losses count only when steps are not skipped (skip_nonfinite does not apply them)."""
    if not self.config.skip_nonfinite:
      bad = ~jnp.isfinite(sum(metrics.values()))
      self.first_bad_step = jnp.where((self.first_bad_step < 0) & bad.any(), first + 1 + jnp.argmax(bad),
                                      self.first_bad_step)
    for k, v in metrics.items():
      self.metric_sums[k] = self.metric_sums[k] + jnp.sum(v) if k in self.metric_sums else jnp.sum(v)
      self.metric_counts[k] = self.metric_counts.get(k, 0) + size
    self.window_steps += size
    if first == self.start_step:
      jax.block_until_ready(metrics)
      logging.info('First call (including compilation) took %.1f s', time.time() - self.window_start)
      self._new_window()

  def _after_call(self, first: int, done: int, stopping: bool) -> bool:
    """The periodic hooks after a call that took the run from step `first` to `done`; returns whether to stop."""
    config, last = self.config, done == self.total_steps
    crossed = lambda period: period > 0 and done // period > first // period
    if (crossed(config.log_every_steps) or last) and self.window_steps:
      self._stop_if_diverged(done)
      self._log_progress(done)
    if crossed(self.steps_per_epoch) or last or crossed(config.sample_every_steps):
      self._write_samples(done)
    if last or crossed(self.eval_period):
      self._stop_if_diverged(done)
      self.monitor.evaluate(done, self.state)
    if (crossed(self.steps_per_epoch * config.checkpoint_every_epochs) or last
        or crossed(config.checkpoint_every_steps) or stopping):
      self._stop_if_diverged(done)  # Never write a diverged state over the last good one.
      self.checkpointer.save(self.state)
    return stopping

  def _log_progress(self, done: int) -> None:
    """The progress line and the scalars: means over the window's steps."""
    elapsed = max(time.time() - self.window_start, 1e-9)
    means = {k: float(v) / self.metric_counts[k] for k, v in self.metric_sums.items()}
    updates = {k: means.pop(k) * self.metric_counts[k] for k in ('d_updates', 'g_updates')}
    skipped = means.pop('skipped', 0.0) * self.window_steps
    # Real images through D per second (G-only steps read none).
    images_per_s = updates['d_updates'] * self.config.batch_size / elapsed
    eta = (self.total_steps - done) * elapsed / self.window_steps
    besteffort.call('scalars', self.writer.write_scalars, done, {
        **means, **updates, 'images_per_second': images_per_s, 'steps_per_second': self.window_steps / elapsed})
    self.monitor.record(done, means)
    logging.info('step %d/%d epoch %d: %s; updates D %d G %d; %.0f img/s, %.2f steps/s, ETA %s%s',
                 done, self.total_steps, (done - 1) // self.steps_per_epoch + 1, _format_metrics(means),
                 updates['d_updates'], updates['g_updates'], images_per_s, self.window_steps / elapsed,
                 _format_time(eta), f', {skipped:.0f} non-finite steps skipped' if skipped else '')
    self._new_window()

  def _finish(self, stopped_at: int = 0) -> train_state.TrainState:
    """Closes the checkpointer (waiting for the last write), the summaries and the event file."""
    self.checkpointer.close()
    self.monitor.finish()
    besteffort.call('event file', self.writer.flush)
    if stopped_at:
      logging.warning('Stopped at step %d of %d on request; checkpoint written to %s. Run the same command '
                      'to resume.', stopped_at, self.total_steps, self.checkpointer.directory)
    else:
      logging.info('Done: %d steps in %s of wall-clock time (this run); checkpoints in %s; parameter fingerprint '
                   '%s', self.total_steps, _format_time(time.time() - self.run_start), self.checkpointer.directory,
                   _fingerprint(self.state))
    return self.state
