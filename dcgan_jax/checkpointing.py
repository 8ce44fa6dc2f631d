"""Checkpoints of the train state with orbax: the newest N kept, exact resume, a clear error on a model mismatch.

orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash during a write
never leaves a half-written checkpoint that a restart would pick up.
"""

import contextlib
import errno
import logging as std_logging
import os
from typing import Any, Optional

from absl import logging
import jax
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
  if code in (errno.ENOSPC, errno.EDQUOT):
    return f'free disk space on the file system of {directory}'
  if code in (errno.EACCES, errno.EPERM, errno.EROFS):
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


def describe_mismatch(saved: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]]) -> list[str]:
  """Lines naming each parameter whose shape differs, or that only one side has."""
  lines = []
  for name in sorted(set(saved) | set(wanted)):
    s, w = saved.get(name), wanted.get(name)
    if s != w:
      lines.append(f'{name}: checkpoint {s if s is not None else "(absent)"}, '
                   f'config {w if w is not None else "(absent)"}')
  return lines


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

  def save(self, state: Any) -> None:
    """Starts writing `state` at its step (asynchronously; `wait` or the next save finishes it).

    Raises:
      errors.CheckpointWriteError: this or the previous (asynchronous) write failed; names the directory, the OS
        error and the fix.
    """
    step = int(state.step.addressable_data(0)) if isinstance(state.step, jax.Array) else int(state.step)
    if step in self._manager.all_steps():
      return
    with self._write_errors():
      self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, template: Any) -> Optional[Any]:
    """The newest usable checkpoint restored into the structure, shapes and shardings of `template`; None if none.

    A damaged checkpoint (truncated or missing files) is skipped with a warning naming it, and the previous one is
    tried.

    Raises:
      errors.CheckpointError: the checkpoint holds a model with other parameter shapes than `template`, or
        checkpoints exist but none of them can be read.
    """
    steps = sorted(self._manager.all_steps(), reverse=True)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    failures = []
    for step in steps:
      path = f'{self.directory}/{step}'
      try:
        tree = self._manager.item_metadata(step).tree
        self._check_shapes(tree, template, path)
        logging.info('Restoring checkpoint %s', path)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except errors.CheckpointError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        reason = f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'
        logging.warning('Checkpoint %s is unreadable (%s); trying the previous one.', path, reason)
        failures.append(f'{step} ({reason})')
    if failures:
      raise errors.CheckpointError(
          f'no usable checkpoint in {self.directory}: {"; ".join(failures)}. Move the directory away to start '
          'over, or restore it from a backup.')
    return None

  @staticmethod
  def _check_shapes(tree: Any, template: Any, path: str) -> None:
    lines = []
    for field in ('g_params', 'd_params'):
      lines += [f'{field}/{line}' for line in describe_mismatch(
          _shapes(tree.get(field)), _shapes(getattr(template, field)))]
    if lines:
      raise errors.CheckpointError(
          f'the checkpoint at {path} was written for another model; differing parameters: '
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
