"""Samples from a trained run, without its dataset: a grid PNG, raw arrays (.npy), or latent interpolations.

  python -m dcgan_jax.cli.sample --workdir=W [--checkpoint=best|latest|STEP] --num=64 --out=grid.png \
      [--interpolate] [--use_running_average] [--seed=0] [--export=generator.jax] [--generator=ema|raw]
      [--label=K|NAME]

The run's config comes from `W/config.json`; the parameters from `W/checkpoints/` (latest or a given step) or
`W/checkpoints_best/` (best), read-only, so it is safe while the run is still training. The same --seed gives the
same images. A run trained with `config.ema_decay` > 0 samples from the moving average of G's weights unless
`--generator=raw`.

Class-conditional runs (`config.num_classes` > 0) write a per-class grid by default (one row of `num // K` images
per class the run's data holds, at least one); `--label` asks for one class, by index (`--label=7`) or, for a
folder dataset, by its subdirectory name (`--label=paper`, from the run's `classes.json`).
"""

import functools
import json
import os
import tempfile
from typing import Any, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from dcgan_jax.trainer import checkpointing
from dcgan_jax import errors
from dcgan_jax import models
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax import visualize

CHECKPOINTS = 'checkpoints'
BEST_CHECKPOINTS = 'checkpoints_best'


def _tuples(value: Any) -> Any:
  """JSON lists back to tuples (the configs hold tuples), recursively; dicts keep their keys."""
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run was trained with, from `workdir/config.json` (lists read back as tuples).

  Fields that a newer version of the code added are filled with their defaults (`configs/default.py`, when it is
  importable; a network's fields from its module, `models.network_config`), so that runs written before them still
  load.

  Raises:
    errors.CheckpointError: the workdir or its config.json is missing or unreadable, or was written with the flat
      `config.model` of version 0.1 (whose checkpoints do not restore), or names a network field that is gone.
  """
  if not os.path.isdir(workdir):
    raise errors.CheckpointError(f'--workdir={workdir} does not exist; pass the directory a training run wrote to')
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      saved = _tuples(json.load(f))
    saved.pop('history', None)  # Config changes made on resumes (dcgan_jax.trainer.workdir), not a config field.
  except FileNotFoundError:
    raise errors.CheckpointError(f'{path} is missing; --workdir must be a training run directory (main.py writes '
                                 'config.json there when it starts)') from None
  except (OSError, ValueError) as e:
    raise errors.CheckpointError(
        f'cannot read {path} ({type(e).__name__}: {e}); restore it from the run or retrain') from None
  model = saved.pop('model', {})
  networks = _network_sections(path, model)
  try:
    from dcgan_jax.configs import default  # pylint: disable=g-import-not-at-top
    config = default.get_config()
    config.update(saved)
    for name, section in networks.items():
      config.model[name] = section  # Replaced, not merged: the run's family may differ from the default's.
    config.model.update({k: v for k, v in model.items() if k not in networks})
    return config
  except (ImportError, TypeError, ValueError, KeyError):
    # Without the defaults (installed package) or if a saved value no longer fits a field's type: as saved.
    return ml_collections.ConfigDict({**saved, 'model': {**model, **networks}})


def _network_sections(path: str, model: dict[str, Any]) -> dict[str, ml_collections.ConfigDict]:
  """The saved `model.generator` and `model.discriminator` (those present) with the fields added since filled in
  from their modules."""
  if any(key == 'name' or key.startswith(('g_', 'd_')) for key in model):
    raise errors.CheckpointError(
        f'{path} has a flat config.model (model.name, model.g_features, ...): the run was trained by dcgan_jax '
        '0.1, whose checkpoints do not restore in this version; retrain it (its settings now live under '
        'config.model.generator and config.model.discriminator, see docs/configuration.md)')
  sections = {}
  for network in (name for name in models.NETWORKS if name in model):
    fields = dict(model[network])
    try:
      sections[network] = models.network_config(network, fields.pop('family', None), **fields)
    except errors.ConfigError as e:
      raise errors.CheckpointError(f'{path} describes a model this version cannot build: {e}') from None
  return sections


def abstract_state(config: ml_collections.ConfigDict) -> train_state.TrainState:
  """The `TrainState` of `config` as shapes and dtypes only (on the first device), for restoring a checkpoint
  without compiling or running the networks' initialization."""
  shapes = jax.eval_shape(lambda: train_state.create_train_state(config, jax.random.key(0)))
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), shapes)


def _steps(directory: str) -> list[int]:
  # orbax names each finished checkpoint by its step; temporary (unfinished) ones carry a suffix and are skipped.
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and os.path.isdir(os.path.join(directory, name)))


def _restore_step(directory: str, step: int, template: train_state.TrainState) -> train_state.TrainState:
  """Checkpoint `step` of `directory` restored into `template`'s structure, after the same model check as
  `Checkpointer.restore`.

  The manager is read-only, unlike `checkpointing.Checkpointer`, which removes unfinished temporary directories
  when it opens: sampling from a run that is still training must not delete the checkpoint it is writing.
  """
  manager = ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(read_only=True))
  try:
    tree = manager.item_metadata(step).tree
    lines = checkpointing.parameter_mismatch(tree, template)
    if lines:
      raise errors.CheckpointError(
          f'the checkpoint at {directory}/{step} was written for another model than {directory}/../config.json '
          f'describes; differing parameters and statistics: {"; ".join(lines[:10])}')
    return checkpointing.restore_step(manager, step, template, tree)
  finally:
    manager.close()


def restore_state(workdir: str, config: ml_collections.ConfigDict, checkpoint: str = 'latest') -> train_state.TrainState:
  """The train state of a run.

  Args:
    workdir: the run's directory.
    config: its config (`load_run_config(workdir)`).
    checkpoint: 'latest' (newest in `workdir/checkpoints`), 'best' (newest in `workdir/checkpoints_best`, which
      the trainer keeps when it evaluates), or a step number.

  A damaged 'latest' or 'best' checkpoint (unreadable, a checksum mismatch, NaN or Inf values) is skipped with a
  warning for the one before it.

  Raises:
    errors.CheckpointError: no such checkpoint (the message lists what exists), one written for another model, or
      none usable.
    errors.ConfigError: `checkpoint` is not 'latest', 'best' or a number.
  """
  best = checkpoint == 'best'
  if not best and checkpoint != 'latest' and not checkpoint.isdigit():
    raise errors.ConfigError(f'--checkpoint={checkpoint} is not best, latest or a step number')
  directory = os.path.abspath(os.path.join(workdir, BEST_CHECKPOINTS if best else CHECKPOINTS))
  available = _steps(directory) if os.path.isdir(directory) else []
  if not available:
    if best:
      raise errors.CheckpointError(f'no best checkpoint: {directory} does not exist or is empty (the trainer keeps '
                                   'it only when it evaluates FID); use --checkpoint=latest or a step')
    raise errors.CheckpointError(f'no checkpoint in {directory}; train first (main.py --workdir={workdir}) or '
                                 'point --workdir at a run that saved one')
  if checkpoint in ('latest', 'best'):
    candidates = available[::-1]
  elif int(checkpoint) in available:
    candidates = [int(checkpoint)]
  else:
    raise errors.CheckpointError(f'no checkpoint for step {checkpoint} in {directory}; available steps: '
                                 f'{", ".join(map(str, available))}')
  template, failures = abstract_state(config), []
  for step in candidates:
    try:
      return _restore_step(directory, step, template)
    except errors.UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except  (orbax reports damage through many exception types)
      reason = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'
      failures.append(f'{step} ({reason})')
      if len(candidates) > 1:
        logging.warning('Checkpoint %s/%d is unusable (%s); trying the previous one.', directory, step, reason)
  raise errors.CheckpointError(
      f'no usable checkpoint in {directory}: {"; ".join(failures)}; pass --checkpoint=STEP with another of the '
      f'available steps ({", ".join(map(str, available))}) or retrain')


def load(workdir: str, checkpoint: 'str | int' = 'latest') -> tuple[ml_collections.ConfigDict, train_state.TrainState]:
  """A run written by `main.py` (single- or multi-process): its config and its train state.

  Args:
    workdir: the run's directory (holds config.json and checkpoints/).
    checkpoint: 'latest', 'best' (checkpoints_best/, kept when the run evaluates) or a step number.

  Returns:
    `(config, state)`; the state's arrays are on the first local device. Read-only: safe while the run trains.

  Raises:
    errors.CheckpointError: no such run or checkpoint (the message lists what exists).
  """
  config = load_run_config(workdir)
  return config, restore_state(workdir, config, str(checkpoint))


def interpolation_noise(rng: jax.Array, rows: int, steps: int, latent_dim: int, noise: str) -> jax.Array:
  """Noise for `rows` interpolations: row r goes linearly from z_a[r] to z_b[r] in `steps` points (both ends
  included). Returns float32 [rows * steps, latent_dim], row-major (row r is entries r*steps .. r*steps+steps-1)."""
  ends = train.sample_noise(rng, (2, rows, latent_dim), noise)
  t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
  z = ends[0][:, None, :] * (1.0 - t) + ends[1][:, None, :] * t
  return z.reshape(rows * steps, latent_dim)


def recorded_classes(workdir: str, num_classes: int) -> tuple[list[Optional[str]], list[int]]:
  """A class-conditional run's class names (None for a class its data does not hold) and the classes its data
  holds, from `workdir/classes.json` (written by the trainer); a run without the record: names '0'..'K-1', all
  classes."""
  try:
    with open(os.path.join(workdir, 'classes.json')) as f:
      names = [None if n is None else str(n) for n in json.load(f)]
  except (OSError, ValueError, TypeError):
    names = []
  if len(names) != num_classes:
    names = [str(k) for k in range(num_classes)]
  return names, [k for k, name in enumerate(names) if name is not None]


def class_index(workdir: str, config: ml_collections.ConfigDict, label: str) -> int:
  """The class `label` names in a class-conditional run: an index in 0..num_classes-1, or a class name from
  `workdir/classes.json` (the folder source's subdirectory names, written by the trainer).

  Raises:
    errors.ConfigError: the run is unconditional, or `label` is neither a valid index nor a recorded name.
  """
  num_classes = config.get('num_classes', 0)
  if not num_classes:
    raise errors.ConfigError(f'--label={label}: this run is unconditional (config.num_classes=0); drop --label')
  names, _ = recorded_classes(workdir, num_classes)
  if label in names and not label.isdigit():
    return names.index(label)
  if label.isdigit() and int(label) < num_classes:
    return int(label)
  named = [n for n in names if n is not None]
  hint = f' or one of {", ".join(named)}' if named != [str(k) for k in range(num_classes)] else ''
  raise errors.ConfigError(f'--label={label}: not a class of this run; pass an index in 0..{num_classes - 1}{hint}')


def sample_labels(config: ml_collections.ConfigDict, num: int, label: Optional[int] = None,
                  rows: int = 0, steps: int = 0, classes: Optional[Sequence[int]] = None
                  ) -> tuple[Optional[np.ndarray], int]:
  """The labels to sample a run with, and the grid's columns: `(None, 0)` for an unconditional run; `label` for
  every image (columns 0: near-square); with `rows` (interpolation) row r gets class `label` or the r-th of
  `classes` (cycling), columns `steps`; else a per-class grid, one row of max(1, num // len(classes)) images per
  class of `classes` (int32). `classes`: those the run's data holds (`recorded_classes`), default all K."""
  num_classes = config.get('num_classes', 0)
  if not num_classes:
    return None, 0
  classes = np.asarray(range(num_classes) if classes is None else classes, np.int32)
  if rows:
    per_row = np.full((rows,), label, np.int32) if label is not None else classes[np.arange(rows) % len(classes)]
    return np.repeat(per_row, steps), steps
  if label is not None:
    return np.full((num,), label, np.int32), 0
  per_class = max(1, num // len(classes))
  return np.repeat(classes, per_class), per_class


@functools.lru_cache(maxsize=None)
def _generate_fn(use_batch_stats: bool, generator: str):
  # Compiled once per BatchNorm mode and weights: the modules travel in the state's (static) structure.
  return jax.jit(functools.partial(train.generate, use_batch_stats=use_batch_stats, generator=generator))


def generate_samples(state: train_state.TrainState, config: ml_collections.ConfigDict, num: int, seed: int = 0,
                     interpolate: bool = False, steps: int = 8, generator: str = 'auto',
                     label: Optional[int] = None, classes: Optional[Sequence[int]] = None
                     ) -> tuple[np.ndarray, int]:
  """Images from the run's generator, deterministic for a given seed.

  Args:
    state: the restored train state.
    config: its config (`config.model.sample_use_batch_stats` picks the BatchNorm statistics).
    num: images wanted (with `interpolate`, rounded down to whole rows of `steps`, at least one row).
    seed: seeds the noise.
    interpolate: rows of linear interpolations between pairs of noise vectors instead of independent samples.
    steps: points per interpolation row.
    generator: 'auto' (the EMA weights when the run has them, else the raw ones), 'ema' or 'raw'
      (`train.generate`).
    label: class-conditional runs: the class of every image; None gives a per-class grid (`sample_labels`).
    classes: class-conditional runs: the classes of a per-class grid or interpolation (default all).

  Returns:
    `(images float32 [N, H, W, C] in models.data_range(config), columns for a grid: steps if interpolating, the
    images per class of a per-class grid, else 0)`.
  """
  rng = jax.random.key(seed)
  rows = max(1, num // steps) if interpolate else 0
  labels, columns = sample_labels(config, num, label, rows, steps, classes)
  if interpolate:
    z = interpolation_noise(rng, rows, steps, config.latent_dim, config.noise)
  else:
    z = train.sample_noise(rng, (num if labels is None else labels.shape[0], config.latent_dim), config.noise)
  use_batch_stats = bool(config.model.sample_use_batch_stats)
  fn = _generate_fn(use_batch_stats, generator)
  if labels is None:
    images = fn(state, z)
  elif label is not None and use_batch_stats:
    images = _among_every_class(fn, state, z, label, classes, config, rng)
  else:
    images = fn(state, z, labels)
  return np.asarray(images, np.float32), (steps if interpolate else columns)


def _among_every_class(fn, state: train_state.TrainState, z: np.ndarray, label: int,
                       classes: Optional[Sequence[int]], config: ml_collections.ConfigDict, rng: jax.Array):
  """Images of class `label` from noise `z` [N, L], each drawn in a batch that holds one image of every class.

  With batch statistics, BatchNorm normalizes over the batch it is given, and in training every fake batch held all
  classes (uniform labels): a batch of one class only is another distribution. Measured on
  `configs/mnist_conditional.py` after 5 epochs, 1,000 samples per digit: recognised as asked 91.5% of the time in
  mixed batches (worst digit 81%), 89.8% in single-class batches (worst digit 76%). So each requested image sits
  among one image of every other class (their noise drawn from `rng`), and only the requested ones are kept: K
  times the compute for K classes.
  """
  held = sorted(set(range(config.num_classes) if classes is None else (int(k) for k in classes)) | {label})
  n, k = z.shape[0], len(held)
  mixed_labels = np.tile(np.asarray(held, np.int32), n)
  mixed_z = np.array(train.sample_noise(jax.random.fold_in(rng, 1), (n * k, config.latent_dim), config.noise))
  position = held.index(label)
  mixed_z[position::k] = np.asarray(z)
  return np.asarray(fn(state, mixed_z, mixed_labels))[position::k]


def run(workdir: str, out: str, checkpoint: str = 'latest', num: int = 64, seed: int = 0, interpolate: bool = False,
        use_running_average: Optional[bool] = None, steps: int = 8, export: Optional[str] = None,
        generator: Optional[str] = None, label: Optional[str] = None) -> np.ndarray:
  """Restores a run and writes samples to `out` (.png: a grid; .npy: the raw float32 [N, H, W, C] array).

  `use_running_average` None keeps the run's `config.model.sample_use_batch_stats`; True normalizes with the
  running averages, False with the statistics of the sampled batch. `export`: also write the generator, in that
  sampling mode, as a serialized `jax.export.Exported` (`export.export_generator`). `generator`: 'ema' (the
  moving average of G's weights; the run must have `config.ema_decay` > 0), 'raw', or None (the EMA when the run has
  one). `label`: a class index or name, for class-conditional runs (see the module docstring). Returns the images
  written.
  """
  extension = os.path.splitext(out)[1].lower()
  if extension not in ('.png', '.npy'):
    raise errors.ConfigError(f'--out={out} must end in .png (a grid) or .npy (the raw samples)')
  if num < 1:
    raise errors.ConfigError(f'--num={num} must be at least 1')
  if interpolate and steps < 2:
    raise errors.ConfigError(f'--steps={steps} must be at least 2 with --interpolate (both ends of each row)')
  if generator not in (None, 'ema', 'raw'):
    raise errors.ConfigError(f'--generator={generator} must be ema or raw')
  check_writable(out)  # Before the work, not after it.
  config = load_run_config(workdir)
  if generator == 'ema' and not config.get('ema_decay', 0.0) > 0:
    raise errors.ConfigError(f'--generator=ema: the run in {workdir} was trained without an EMA of the generator '
                             '(config.ema_decay=0); use --generator=raw')
  generator = generator or 'auto'
  label_index = None if label is None else class_index(workdir, config, label)
  if export and config.get('num_classes', 0):
    raise errors.ConfigError('--export: exporting a class-conditional generator is not supported yet; drop --export')
  if use_running_average is not None:
    config.model.sample_use_batch_stats = not use_running_average
  state = restore_state(workdir, config, checkpoint)
  classes = recorded_classes(workdir, config.num_classes)[1] if config.get('num_classes', 0) else None
  images, columns = generate_samples(state, config, num, seed, interpolate, steps, generator, label_index, classes)
  if export:
    from dcgan_jax import export as export_lib  # pylint: disable=g-import-not-at-top
    export_lib.export_generator(state, export, use_batch_stats=bool(config.model.sample_use_batch_stats),
                                generator=generator)
  try:
    if extension == '.npy':
      np.save(out, images)
    else:
      visualize.save_grid(out, images, models.data_range(config), columns)
  except OSError as e:
    raise errors.OutputError(f'cannot write --out={out} ({type(e).__name__}: {e.strerror or e}); free disk space '
                             'or pass a writable path') from None
  return images


def check_writable(out: str) -> None:
  """Creates the directory of `out` if needed and checks that a file can be created there.

  Raises:
    errors.OutputError: naming the path and the OS error.
  """
  directory = os.path.dirname(os.path.abspath(out))
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
    if os.path.isdir(out):
      raise IsADirectoryError(21, 'Is a directory')
  except OSError as e:
    raise errors.OutputError(f'cannot write --out={out} ({type(e).__name__}: {e.strerror or e}); pass a path in '
                             'a writable directory') from None
