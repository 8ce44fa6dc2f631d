"""Whether the CPU path's convolutions use the oneDNN handlers: `configure`, `active`, `self_check`.

`backend.cpu_conv_mode()` says what the user asked for (`configure`, or `using` for a block): 'xla' never builds anything; 'auto' uses oneDNN when the
library builds (`build.library_status`) and its three handlers equal XLA's convolution on a small case
(`self_check`), else XLA's convolutions, saying why in ONE log line; 'onednn' insists: `configure` (and `active`,
at trace time) raise `errors.ConfigError` with one line naming the problem and the install command. Only the CPU
backend ever uses them: on GPU/TPU (`jax.default_backend()` not 'cpu') `active()` is False whatever the mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax import lax

from dcgan_jax import backend
from dcgan_jax import errors
from dcgan_jax.ops.onednn import build
from dcgan_jax.ops.onednn import conv

_STATE: dict[str, str | None] = {'check': None}  # '' passed; else why not; None: not run yet.
_LOGGED: set[str] = set()
# The self-check's case: uneven padding, stride 2, a kernel of 3x2, batch 2.
_CHECK_CASE = dict(x=(2, 7, 6, 5), kernel=(3, 2, 5, 4), strides=(2, 2), pads=((1, 1), (0, 1)))
_CHECK_TOLERANCE = 1e-4  # Of the largest magnitude of XLA's result: float32 sums in another order.


def self_check() -> str:
  """Compares each handler (forward, backward-data, backward-weights) with XLA's convolution on a small case.

  Returns:
    '' when all three agree to float32 tolerance, else one line naming the first that does not (or the error).
  """
  c = _CHECK_CASE
  rng = np.random.default_rng(0)
  x, kernel = (rng.uniform(-1, 1, c[name]).astype(np.float32) for name in ('x', 'kernel'))

  def xla(a, k):
    return lax.conv_general_dilated(a, k, c['strides'], c['pads'], dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  def ours(a, k):
    return conv.forward(a, k, c['strides'], c['pads'], (1, 1))

  try:
    with jax.ensure_compile_time_eval():
      y, xla_vjp = jax.vjp(xla, x, kernel)
      g = jnp.asarray(rng.uniform(-1, 1, y.shape).astype(np.float32))
      expected = (y, *xla_vjp(g))
      got_y, our_vjp = jax.vjp(jax.jit(ours), x, kernel)
      got = (got_y, *our_vjp(g))
      names = ('forward', 'backward-data', 'backward-weights')
      for name, want, have in zip(names, expected, got):
        want, have = np.asarray(want), np.asarray(have)
        error = float(np.max(np.abs(want - have))) if want.shape == have.shape else float('inf')
        if not error <= _CHECK_TOLERANCE * float(np.max(np.abs(want))):
          return f'the {name} handler differs from XLA by {error:.3g} (shapes {have.shape} vs {want.shape})'
  except Exception as e:  # pylint: disable=broad-except  (any failure of the plugin means: use XLA)
    return f'the self-check failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'
  return ''


def _problem() -> str:
  """'' when the handlers are built, registered and self-checked in this process; else why not (one line)."""
  status = build.library_status()
  if not status.ok:
    return status.reason
  if _STATE['check'] is None:
    _STATE['check'] = self_check()
  return _STATE['check']


def _insist_line(problem: str) -> str:
  return (f'config.cpu_conv=onednn: the oneDNN convolutions cannot be used: {problem}; install them with: '
          f'{build.INSTALL_HINT} (and g++), or set --config.cpu_conv=auto or xla')


def active() -> bool:
  """Whether the CPU path's convolutions are oneDNN's now (called when a function is traced).

  Raises:
    errors.ConfigError: the mode is 'onednn' on the CPU backend and the library cannot be built or fails its
      self-check.
  """
  mode = backend.cpu_conv_mode()
  if mode == 'xla' or jax.default_backend() != 'cpu':
    return False
  problem = _problem()
  if problem and mode == 'onednn':
    raise errors.ConfigError(_insist_line(problem))
  if problem and problem not in _LOGGED:
    _LOGGED.add(problem)
    logging.warning('cpu_conv=auto: using XLA\'s convolutions: %s', problem)
  return not problem


def configure(mode: str) -> bool:
  """Sets `backend.set_cpu_conv(mode)` and, unless 'xla', builds and checks the library now (before any tracing).

  Args:
    mode: 'auto', 'xla' or 'onednn'.

  Returns:
    Whether the CPU path's convolutions will be oneDNN's (`active()`).

  Raises:
    errors.ConfigError: mode 'onednn' and the library cannot be used (one line; the previous mode stays), or an
      unknown mode.
  """
  if mode not in backend.CPU_CONV_MODES:
    raise errors.ConfigError(f'config.cpu_conv={mode!r}: must be one of {", ".join(backend.CPU_CONV_MODES)}')
  previous = backend.cpu_conv_mode()
  backend.set_cpu_conv(mode)
  try:
    return active()
  except errors.ConfigError:
    backend.set_cpu_conv(previous)  # The setting in force stays what it was.
    raise


@contextlib.contextmanager
def using(mode: str) -> Iterator[bool]:
  """`configure(mode)` for the duration of a `with` block (functions traced inside it), then the previous mode.

  Yields:
    Whether the CPU path's convolutions are oneDNN's inside the block.

  Raises:
    errors.ConfigError: as `configure`, before the block runs.
  """
  previous = backend.cpu_conv_mode()
  active_now = configure(mode)
  try:
    yield active_now
  finally:
    backend.set_cpu_conv(previous)


def reset() -> None:
  """Forgets this process's build result, self-check and logged lines (tests; a later call rebuilds/rechecks)."""
  build.forget()
  _STATE['check'] = None
  _LOGGED.clear()
