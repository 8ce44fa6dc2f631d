"""Training schedules: which updates each step of the loop makes, and which real batches they read.

`config.schedule` picks one:
  * 'alternating': every step makes `d_steps` D updates (each on its own real batch), then `g_steps` G updates.
    Static: `steps_per_call` steps run in one compiled call. An epoch is `batches_per_epoch // d_steps` steps.
  * 'epoch_blocks': each epoch of N batches is N G-only steps (G trains for a whole epoch of steps), then N D-only
    steps over the epoch's batches. Static: calls never straddle a block, each runs `steps_per_call` steps of one
    side. An epoch is 2N steps.
  * 'adaptive': G-only steps until G fools D on at least `g_target` of a fresh batch (or `g_max_steps` steps), then
    D-only steps until D's accuracy on a held-out real batch plus a fresh fake batch reaches `d_target` (or
    `d_max_steps` steps), and again. The turn depends on the data, so the host reads it after every step (one step
    per call); the turn and its step count live in the state, so a resumed run continues the same phase. The
    held-out batch (`batch_size` images chosen by the seed) is removed from the training data. An epoch is N steps.

The real batch of every D update is the next one of the epoch-ordered stream (`state.d_updates` counts them), so
a resumed run reads exactly the batches the uninterrupted run would have.
"""

from typing import Iterator

import ml_collections
import numpy as np

from dcgan_jax import steps

SCHEDULES = ('alternating', 'epoch_blocks', 'adaptive')


class Schedule:
  """The host side of a schedule: step kinds, epochs, call boundaries and batch positions."""

  def __init__(self, config: ml_collections.ConfigDict, batches_per_epoch: int):
    self.name = config.schedule
    self._batches = batches_per_epoch
    if self.name == 'alternating':
      self._kind = steps.StepKind(d_steps=config.d_steps, g_steps=config.g_steps)
      self.steps_per_epoch = max(1, batches_per_epoch // config.d_steps)
    elif self.name == 'epoch_blocks':
      self.steps_per_epoch = 2 * batches_per_epoch
    elif self.name == 'adaptive':
      self._g_kind = steps.StepKind(d_steps=0, g_steps=1, check='g_fools', target=float(config.g_target),
                                    cap=config.g_max_steps)
      self._d_kind = steps.StepKind(d_steps=1, g_steps=0, check='d_accuracy', target=float(config.d_target),
                                    cap=config.d_max_steps)
      self.steps_per_epoch = batches_per_epoch
    else:
      raise ValueError(f'unknown schedule {self.name!r}; use one of {", ".join(SCHEDULES)}')

  @property
  def dynamic(self) -> bool:
    """Whether the kind and the batch position of a step come from the state (read on the host each step)."""
    return self.name == 'adaptive'

  def kinds(self) -> tuple[steps.StepKind, ...]:
    """Every kind this schedule runs (each compiles once)."""
    if self.name == 'alternating':
      return (self._kind,)
    if self.name == 'epoch_blocks':
      return (steps.G_ONLY, steps.D_ONLY)
    return (self._g_kind, self._d_kind)

  def kind(self, step: int, phase: int = 0) -> steps.StepKind:
    """The kind of `step`; `phase` is the state's adaptive turn (0: G, 1: D)."""
    if self.name == 'alternating':
      return self._kind
    if self.name == 'epoch_blocks':
      return steps.G_ONLY if step % self.steps_per_epoch < self._batches else steps.D_ONLY
    return self._d_kind if phase else self._g_kind

  def d_updates_before(self, step: int) -> int:
    """D updates made before `step` by a static schedule (the stream position of the step's first real batch)."""
    if self.name == 'alternating':
      return step * self._kind.d_steps
    if self.name == 'epoch_blocks':
      epoch, position = divmod(step, self.steps_per_epoch)
      return epoch * self._batches + max(0, position - self._batches)
    raise ValueError('the adaptive schedule reads its position from the state')

  def chunks(self, start: int, total: int, per_call: int) -> Iterator[tuple[int, int]]:
    """Yields `(first_step, num_steps)` covering [start, total): one call each.

    Calls lie on a grid of multiples of `per_call` anchored at step 0 (epoch_blocks: at each block's first step),
    so a resumed run cuts its steps exactly as the uninterrupted run did; they never straddle a block, and hold one
    step under 'adaptive'.
    """
    if self.dynamic:
      per_call = 1
    # epoch_blocks: the grid restarts at every block (blocks start at multiples of the epoch's batches).
    period = self._batches if self.name == 'epoch_blocks' else total + 1
    step = start
    while step < total:
      in_block = step % period
      size = min(per_call - in_block % per_call, period - in_block, total - step)
      yield step, size
      step += size


def batch_numbers(kind: steps.StepKind, num_steps: int, first_batch: int) -> np.ndarray:
  """Stream positions of the real batches of `num_steps` steps of `kind`: int64 [num_steps * kind.rows].

  G-only steps read no batch; each still receives one row (the next batch, unused and not consumed).
  """
  if kind.d_steps == 0:
    return np.full(num_steps, first_batch, np.int64)
  return first_batch + np.arange(num_steps * kind.d_steps, dtype=np.int64)


def hold_out(images: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits `images [N, ...]` into (training images [N - count, ...], held-out images [count, ...]), the held-out
  ones chosen at random by `seed` (datasets are often stored sorted by class)."""
  order = np.random.default_rng([seed, 7]).permutation(images.shape[0])
  kept, held = np.sort(order[count:]), np.sort(order[:count])
  if hasattr(images, 'subset'):  # A streamed folder stays streamed.
    return images.subset(kept), images[held]
  return images[kept], images[held]
