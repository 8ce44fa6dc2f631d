"""Writes that must not stop training: a failure (full disk, permissions, a broken writer) is logged and the run
goes on.

`call` is the one place that decides how such a failure is reported; the training loop (sample grids, event files)
and the monitor (curves, best-checkpoint record, evaluation scalars) both use it. It imports nothing from
dcgan_jax, so any module can use it without an import cycle.
"""

from typing import Any, Callable

from absl import logging


def call(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
  """Runs `fn(*args, **kwargs)`, an output write; if it raises, logs a warning naming `what` and returns.

  Args:
    what: the thing written, for the warning ('sample grid step_0000100.png', 'scalars', a file path).
    fn: the write.
    *args: positional arguments of `fn`.
    **kwargs: keyword arguments of `fn`.
  """
  try:
    fn(*args, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('Could not write %s (%s: %s); training goes on.', what, type(e).__name__, e)
