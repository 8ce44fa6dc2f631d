"""Checkpoints of the train state with orbax: the newest N kept, exact resume, a clear error on a model mismatch.

orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash during a write
never leaves a half-written checkpoint that a restart would pick up.
"""

import contextlib
import dataclasses
import errno
import hashlib
import logging as std_logging
import os
from typing import Any, Optional

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp

from dcgan_jax import errors


def quiet_orbax_logs(record) -> bool:
  """A logging filter: orbax's warnings pass; its INFO chatter (a dozen lines per save or restore) does not, nor
  its errors (tracebacks of a failed background write, reported by `Checkpointer` as one line) unless the
  verbosity is debug (`--verbosity=1`).

  Compares Python's level numbers: absl's `logging.WARNING` is on absl's own scale (-1) and would pass everything.
  """
  if 'orbax' not in record.pathname:
    return True
  if record.levelno >= std_logging.ERROR:
    return logging.level_debug()
  return record.levelno >= std_logging.WARNING


def _os_error(e: BaseException) -> Optional[OSError]:
  """The first OSError in `e`'s chain of causes (orbax wraps the file system's errors), or None."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError):
      return e
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


def write_failure_advice(e: BaseException, directory: str) -> str:
  """What to do about a failed write under `directory`, from the OS error behind `e`."""
  os_error = _os_error(e)
  code = os_error.errno if os_error is not None else None
  text = str(e)  # tensorstore reports the file system's errors in its messages ("RESOURCE_EXHAUSTED: ...").
  if code in (errno.ENOSPC, errno.EDQUOT) or 'RESOURCE_EXHAUSTED' in text or 'No space left' in text:
    return f'free disk space on the file system of {directory}'
  if code in (errno.EACCES, errno.EPERM, errno.EROFS) or 'PERMISSION_DENIED' in text:
    return (f'make {directory} writable (its permissions, an immutable flag or a read-only mount), or use another '
            '--workdir')
  return f'fix what stops writes to {directory}'


def _shapes(tree: Any, prefix: str = '') -> dict[str, tuple[int, ...]]:
  """Flattens nested dicts of arrays (or orbax ArrayMetadata) into {'a/b/kernel': shape}."""
  out = {}
  if isinstance(tree, dict):
    for k, v in tree.items():
      out.update(_shapes(v, f'{prefix}/{k}' if prefix else str(k)))
  elif tree is not None:
    out[prefix] = tuple(tree.shape)
  return out


def parameter_mismatch(tree: Any, template: Any) -> list[str]:
  """Lines naming each generator or discriminator parameter or statistic (BatchNorm's running averages, spectral
  normalization's power iteration) whose shape differs between a checkpoint and a state, or that only one has.

  Args:
    tree: the checkpoint's metadata tree (a dict with 'g_params', 'd_params', 'g_batch_stats' and 'd_batch_stats' of
      arrays or orbax ArrayMetadata).
    template: the `train_state.TrainState` the checkpoint is to be restored into.

  Returns:
    `describe_mismatch` lines prefixed with their field ('g_params/...', 'd_batch_stats/...'); empty if they agree.
  """
  lines = []
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats'):
    lines += [f'{field}/{line}' for line in describe_mismatch(
        _shapes(tree.get(field)), _shapes(getattr(template, field)))]
  return lines


def describe_mismatch(saved: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]]) -> list[str]:
  """Lines naming each parameter whose shape differs, or that only one side has."""
  lines = []
  for name in sorted(set(saved) | set(wanted)):
    s, w = saved.get(name), wanted.get(name)
    if s != w:
      lines.append(f'{name}: checkpoint {s if s is not None else "(absent)"}, '
                   f'config {w if w is not None else "(absent)"}')
  return lines


DAMAGED_SUFFIX = '.damaged'


class DamagedCheckpointError(Exception):
  """A checkpoint was read but its contents cannot be trusted (checksum mismatch, NaN or Inf values)."""


def checksum(tree: Any) -> str:
  """SHA-256 over the bytes, shapes and dtypes of every array of `tree` (this process's copy of each)."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(tree):
    if isinstance(leaf, jax.Array):
      leaf = leaf.addressable_data(0)
    value = np.asarray(leaf)
    digest.update(f'{value.dtype}{value.shape}'.encode())
    digest.update(np.ascontiguousarray(value).tobytes())
  return digest.hexdigest()


def verify(manager: ocp.CheckpointManager, step: int, restored: Any) -> None:
  """Checks a restored checkpoint against the checksum saved with it (if any) and for NaN or Inf values.

  Raises:
    DamagedCheckpointError: naming what does not match.
  """
  saved = (manager.metadata(step).custom_metadata or {}).get('sha256')
  if saved is not None and checksum(restored) != saved:
    raise DamagedCheckpointError('its contents do not match the checksum saved with it')
  for leaf in jax.tree.leaves(restored):
    value = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    if np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
      raise DamagedCheckpointError('it holds NaN or Inf values')


def _optional_differences(tree: Any, template: Any) -> tuple[list[str], list[str]]:
  """The optional data fields (default None) of `template`, a flax struct dataclass, that the checkpoint's metadata
  `tree` lacks (written before the field existed), and those it holds while `template` has None (an option switched
  off since). Other differences are left to orbax to report."""
  if not dataclasses.is_dataclass(template) or not isinstance(tree, dict):
    return [], []
  optional = [f.name for f in dataclasses.fields(template) if f.metadata.get('pytree_node', True) and f.default is None]
  missing = [name for name in optional if name not in tree]
  extra = [name for name in optional if getattr(template, name) is None and tree.get(name) is not None]
  return missing, extra


def restore_step(manager: ocp.CheckpointManager, step: int, template: Any, tree: Any) -> Any:
  """Checkpoint `step` restored into `template`'s structure, shapes and shardings, then `verify`-ed.

  Optional fields (those of `template` that default to None) may differ: one the checkpoint lacks comes back as None
  (a checkpoint written before the field existed; those fields are declared last, so its checksum still matches),
  one the checkpoint holds where `template` has None is read (for the checksum) and dropped (an option switched off
  since, e.g. `ema_decay` set to 0 on a resume).
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  missing, extra = _optional_differences(tree, template)
  if not missing and not extra:
    restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
    verify(manager, step, restored)
    return restored
  sharding = next(leaf.sharding for leaf in jax.tree.leaves(abstract) if leaf.sharding is not None)
  items = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)
           if f.metadata.get('pytree_node', True) and f.name not in missing}
  for name in extra:
    items[name] = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree[name])
  restored = abstract.replace(**manager.restore(step, args=ocp.args.StandardRestore(items)),
                              **{name: None for name in missing})
  verify(manager, step, restored)
  return restored.replace(**{name: None for name in extra})


class Checkpointer:
  """Saves and restores `TrainState`s under `directory` (one sub-directory per step)."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    # The handler is named up front so that a fresh manager (a restarted run) can read metadata before restoring.
    # cleanup_tmp_directories: a write cut off by a crash leaves a temporary directory, removed at the next start.
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(), options=options)

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of the complete checkpoints, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, state: Any) -> None:
    """Starts writing `state` at its step (asynchronously; `wait` or the next save finishes it).

    Raises:
      errors.CheckpointWriteError: this or the previous (asynchronous) write failed; names the directory, the OS
        error and the fix.
    """
    step = int(state.step.addressable_data(0)) if isinstance(state.step, jax.Array) else int(state.step)
    with self._write_errors():  # Listing the steps can report the previous write's failure too.
      if step in self._manager.all_steps():
        return
      self._manager.save(step, args=ocp.args.StandardSave(state), custom_metadata={'sha256': checksum(state)})

  def restore(self, template: Any) -> Optional[Any]:
    """The newest usable checkpoint restored into the structure, shapes and shardings of `template`; None if none.

    A damaged checkpoint (truncated or missing files, contents that do not match the checksum saved with it, NaN or
    Inf values) is skipped with a warning naming it, moved aside as `STEP.damaged` (by process 0; so that training
    that step again writes a good one), and the previous one is tried.

    Raises:
      errors.CheckpointError: the checkpoint holds a model with other parameter shapes than `template`, or
        checkpoints exist but none of them can be read.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    failures, restored = [], None
    for step in steps:
      path = f'{self.directory}/{step}'
      try:
        tree = self._manager.item_metadata(step).tree
        self._check_shapes(tree, template, path)
        logging.info('Restoring checkpoint %s', path)
        restored = restore_step(self._manager, step, template, tree)
        break
      except errors.CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        restored = None
        reason = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'
        logging.warning('Checkpoint %s is unusable (%s); trying the previous one.', path, reason)
        failures.append((step, reason))
    if restored is not None:
      self._move_aside([step for step, _ in failures])
    elif failures:
      raise errors.CheckpointError(
          f'no usable checkpoint in {self.directory}: {"; ".join(f"{s} ({r})" for s, r in failures)}. Move the '
          'directory away to start over, or restore it from a backup.')
    return restored

  def _move_aside(self, steps: list[int]) -> None:
    """Renames damaged checkpoints to `STEP.damaged` (on process 0; a failure is only logged), so that training the
    step again writes a good one."""
    if not steps:
      return
    if jax.process_index() == 0:
      for step in steps:
        path = f'{self.directory}/{step}'
        target, n = path + DAMAGED_SUFFIX, 1
        while os.path.exists(target):
          target, n = f'{path}{DAMAGED_SUFFIX}.{n}', n + 1
        try:
          os.rename(path, target)
          logging.warning('Moved the damaged checkpoint %s aside to %s', path, target)
        except OSError as e:
          logging.warning('Could not move the damaged checkpoint %s aside (%s)', path, e)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('dcgan_jax.trainer.checkpointing.move_aside')
    self._manager.reload()

  @staticmethod
  def _check_shapes(tree: Any, template: Any, path: str) -> None:
    lines = parameter_mismatch(tree, template)
    if lines:
      raise errors.CheckpointError(
          f'the checkpoint at {path} was written for another model; differing parameters and statistics: '
          + '; '.join(lines[:10]) + (f' (and {len(lines) - 10} more)' if len(lines) > 10 else '')
          + '. Use a new --workdir for this config, or the config the checkpoint was trained with.')

  @contextlib.contextmanager
  def _write_errors(self):
    """Turns any failure of this or an earlier (asynchronous) write into one `errors.CheckpointWriteError` line."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      cause = _os_error(e) or e
      message = (str(cause).splitlines() or [''])[0][:300]
      advice = write_failure_advice(e, self.directory)
      raise errors.CheckpointWriteError(
          f'writing a checkpoint to {self.directory} failed ({type(cause).__name__}: {message}); training stopped. '
          f'{advice[0].upper()}{advice[1:]}, then run the same command to resume from the last complete '
          'checkpoint.') from e

  @contextlib.contextmanager
  def finishing_writes(self):
    """On any exception but a failed write, waits for the write in flight before passing it on, so that a process
    that then exits at once (main.py) does not cut a good checkpoint short."""
    try:
      yield
    except errors.CheckpointWriteError:
      raise
    except BaseException:
      try:
        self._manager.wait_until_finished()
      except Exception:  # pylint: disable=broad-except
        pass  # The error being passed on says more.
      raise

  def wait(self) -> None:
    with self._write_errors():
      self._manager.wait_until_finished()

  def close(self) -> None:
    with self._write_errors():
      self._manager.wait_until_finished()
      self._manager.close()
