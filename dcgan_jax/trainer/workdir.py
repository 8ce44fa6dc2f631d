"""A run's workdir: the lock that keeps it to one run at a time, and `config.json`, the run's record.

* The lock is an advisory lock (`flock`) on `WORKDIR/.lock`, which names the holder's host and PID. The kernel
  drops it when the holder dies however it dies, so a lock file left by a dead run is taken over (with a warning
  naming it) and a live holder makes a second run stop at once, naming the holder.
* `config.json` holds the config of the run's latest start and, under `history`, every change made to it on a
  resume. Changes that break exact resume (`EXACT_RESUME_FIELDS`: the data order, the noise stream, the loss or the
  schedule) are refused unless `allow_config_change` says they are meant.
"""

import contextlib
import datetime
import fcntl
import json
import os
import socket
from typing import Any, Iterator, Optional

from absl import logging
import ml_collections

from dcgan_jax import errors

LOCK_NAME = '.lock'
CONFIG_NAME = 'config.json'
HISTORY_KEY = 'history'
# Config fields (dotted; a prefix covers its sub-fields) whose change on resume breaks the promise that a resumed
# run trains exactly like one never interrupted. data.max_device_bytes, data.max_host_bytes and data.data_dir only
# say where the same data is held or found.
EXACT_RESUME_FIELDS = ('seed', 'batch_size', 'loss', 'noise', 'label_smoothing', 'gp_weight', 'r1_weight',
                       'class_loss_weight',
                       'r2_weight', 'r_every', 'diffaugment', 'schedule', 'd_steps', 'g_steps', 'g_target', 'd_target',
                       'g_max_steps', 'd_max_steps', 'data.source', 'data.name', 'data.split', 'data.path',
                       'data.image_size', 'data.channels', 'data.transpose')


def _holder(path: str) -> str:
  try:
    with open(path) as f:
      return f.read().strip()
  except OSError:
    return ''


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s lock for the duration, creating the directory if needed.

  Raises:
    errors.WorkdirBusyError: another live process holds it (the message names its host and PID).
    errors.WorkdirError: the workdir cannot be created or written (names it and the OS error).
  """
  if '://' in workdir:  # gs://... and other remote file systems: no flock there.
    logging.warning('--workdir=%s is not a local path: it is not locked; run one training run on it at a time.',
                    workdir)
    yield
    return
  path = os.path.join(workdir, LOCK_NAME)
  try:
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise errors.WorkdirError(
        f'--workdir={workdir} cannot be used ({type(e).__name__}: {e.strerror or e}); pass a writable directory '
        '(it is created if missing)') from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise errors.WorkdirBusyError(
          f'--workdir={workdir} is in use by another run ({_holder(path) or "holder unknown"}, lock file {path}); '
          'wait for it to end or stop it, or use another --workdir') from None
    stale = _holder(path)
    if stale:
      logging.warning('Took over the lock %s left by a run that is no longer running (%s).', path, stale)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'host {socket.gethostname()} pid {os.getpid()}\n'.encode(), 0)
    yield
    os.ftruncate(fd, 0)  # Released cleanly: nothing stale for the next run to report.
  finally:
    os.close(fd)  # Also drops the flock.


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, f'{prefix}.{k}' if prefix else k))
    return out
  return {prefix: tree}


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def read_record(workdir: str) -> Optional[dict[str, Any]]:
  """`workdir/config.json` as saved (the config's fields and `history`), or None if there is none or it is
  unreadable (a run killed while writing it; it is rewritten)."""
  try:
    with open(os.path.join(workdir, CONFIG_NAME)) as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def config_changes(saved: dict[str, Any], config: ml_collections.ConfigDict) -> dict[str, tuple[Any, Any]]:
  """{dotted field: (saved value, new value)} for every field that differs (`history` aside). A field the saved
  record lacks (one the code added after the run started) is no change while its new value is off (0, False, '' or
  empty: the options' "as before")."""
  old = _flatten({k: v for k, v in saved.items() if k != HISTORY_KEY})
  new = _flatten(_as_json(config))
  added_off = {k for k in set(new) - set(old) if new[k] in (0, False, '', None, [], ())}
  return {k: (old.get(k), new.get(k)) for k in sorted((set(old) | set(new)) - added_off) if old.get(k) != new.get(k)}


def breaks_exact_resume(field: str) -> bool:
  return any(field == f or field.startswith(f + '.') for f in EXACT_RESUME_FIELDS)


def check_resume(workdir: str, config: ml_collections.ConfigDict, has_checkpoint: bool,
                 allow_config_change: bool) -> list[dict[str, Any]]:
  """Compares `config` with the one the run in `workdir` was trained with; returns the history to record.

  Nothing is compared before the run's first checkpoint (there is nothing to resume). Changes that break exact
  resume are refused unless `allow_config_change`; every change is logged and appended to the history.

  Raises:
    errors.ConfigError: a change breaks exact resume and is not allowed; lists each field with both values.
  """
  saved = read_record(workdir)
  history = list(saved.get(HISTORY_KEY, [])) if saved else []
  if not saved or not has_checkpoint:
    return history
  changes = config_changes(saved, config)
  breaking = [f'{k}: {old!r} -> {new!r}' for k, (old, new) in changes.items() if breaks_exact_resume(k)]
  if breaking and not allow_config_change:
    raise errors.ConfigError(
        f'the run in {workdir} was trained with another config, and resuming it with these changes would not '
        f'train as the run would have: {"; ".join(breaking)}. Pass the original values, use a new --workdir, or '
        'pass --allow_config_change if the change is meant')
  if changes:
    logging.warning('Resuming %s with a changed config%s: %s', workdir,
                    ' (allowed by --allow_config_change)' if breaking else '',
                    '; '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in changes.items()))
    history.append({'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                    'changes': {k: [old, new] for k, (old, new) in changes.items()},
                    'breaks_exact_resume': bool(breaking)})
  return history


def write_record(workdir: str, config: ml_collections.ConfigDict, history: list[dict[str, Any]]) -> None:
  """Writes `workdir/config.json`: `config` and, when there is one, its `history` (atomically, by a rename).

  Raises:
    errors.WorkdirError: it cannot be written (names the file and the OS error).
  """
  record = _as_json(config)
  if history:
    record[HISTORY_KEY] = history
  path = os.path.join(workdir, CONFIG_NAME)
  try:
    with open(path + '.tmp', 'w') as f:
      json.dump(record, f, indent=2)
    os.replace(path + '.tmp', path)
  except OSError as e:
    raise errors.WorkdirError(f'cannot write {path} ({type(e).__name__}: {e.strerror or e}); make --workdir '
                              'writable or use another') from None
