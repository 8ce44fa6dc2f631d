"""Checkpoints of the train state with orbax: the newest N kept, exact resume, a clear error on a model mismatch.

orbax writes each checkpoint into a temporary directory and renames it when complete, so a crash during a write
never leaves a half-written checkpoint that a restart would pick up.
"""

import os
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

from dcgan_jax import errors


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
    self._manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(), options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, state: Any) -> None:
    """Starts writing `state` at its step (asynchronously; `wait` or the next save finishes it)."""
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state))

  def restore(self, template: Any) -> Optional[Any]:
    """The newest checkpoint restored into the structure, shapes and shardings of `template`, or None if none.

    Raises:
      errors.CheckpointError: the checkpoint holds a model with other parameter shapes than `template`.
    """
    step = self._manager.latest_step()
    if step is None:
      return None
    tree = self._manager.item_metadata(step).tree
    lines = []
    for field in ('g_params', 'd_params'):
      lines += [f'{field}/{line}' for line in describe_mismatch(
          _shapes(tree.get(field)), _shapes(jax.device_get(getattr(template, field))))]
    if lines:
      raise errors.CheckpointError(
          f'the checkpoint at {self.directory}/{step} was written for another model; differing parameters: '
          + '; '.join(lines[:10]) + (f' (and {len(lines) - 10} more)' if len(lines) > 10 else '')
          + '. Use a new --workdir for this config, or the config the checkpoint was trained with.')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    logging.info('Restoring checkpoint %s/%d', self.directory, step)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
