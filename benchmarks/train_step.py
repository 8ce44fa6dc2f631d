"""Images/s of `jit(train.train_step)` per config: our `dcgan_jax.ops` layers against the stock flax/XLA ones.

Run from the repository root:

  python benchmarks/train_step.py [--configs emnist_letters,rock_paper_scissors,folder,mnist] [--rounds 3]

For each config: the state from `train_state.create_train_state(config, jax.random.key(0))` and one random batch
`{'image': uniform [-1, 1] of [batch_size, S, S, C]}` (the config's batch size and image shape). Two compiled
steps of the same function are compared:

* "stock": the discriminator runs what `flax.linen.Conv` and `flax.linen.max_pool` run: every convolution is
  XLA's (`ops.uses_im2col` patched to answer False while tracing), `ops.max_pool` is patched to
  `flax.linen.max_pool` (XLA's `select_and_scatter` gradient), and the generator's 1x1 -> kxk transposed conv is
  `lax.conv_transpose` (`ops.is_dense_transpose` patched to False);
* "layers": as shipped: `ops.conv`'s rule (im2col for kernels larger than the input or output),
  `ops.max_pool`'s elementwise backward, the 1x1 transposed conv as a matmul.

The two are timed alternately in one process (`--rounds` rounds of `--steps` steps each, after a compile + warm-up
step) so that load from other jobs hits both alike; the table reports the median images/s over rounds. A step
slower than `--max-step-seconds` in warm-up is timed with one step per round.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import statistics
import sys
from unittest import mock

import flax.linen as nn
import jax
import jax.numpy as jnp

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.ops import convolution as ops_convolution  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.ops import transposed as ops_transposed  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import ops  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train_state

_VARIANTS = ('stock', 'layers')


def _flax_max_pool(x, window):
  return nn.max_pool(x, tuple(window), strides=tuple(window), padding='SAME')


def _variant(name: str):
  if name == 'stock':
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(ops_convolution, 'uses_im2col', lambda *args, **kwargs: False))
    stack.enter_context(mock.patch.object(ops, 'max_pool', _flax_max_pool))
    stack.enter_context(mock.patch.object(ops_transposed, 'is_dense_transpose', lambda *args, **kwargs: False))
    return stack
  return contextlib.nullcontext()


def _compile(state, batch, variant: str):
  """(seconds, compiled step) of `variant`."""
  # A fresh jit wrapper per variant: the two states are equal, so one wrapper would reuse the first trace.
  step = lambda s, b: train.train_step(s, b)  # pylint: disable=unnecessary-lambda
  with _variant(variant):
    return harness.compile_seconds(jax.jit(step), state, batch)


def _steps(step, state, batch, steps: int):
  """A function of no arguments that runs `steps` steps from `state` (the harness blocks on its result)."""

  def run():
    s, metrics = state, None
    for _ in range(steps):
      s, metrics = step(s, batch)
    return s, metrics

  return run


def benchmark_config(name: str, rounds: int, steps: int, max_step_seconds: float, log) -> dict[str, object]:
  """Median images/s per variant (and the batch size) for `configs/<name>.py`."""
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  state = train_state.create_train_state(config, jax.random.key(0))
  size = models.output_size(config)
  shape = (config.batch_size, size, size, config.data.channels)
  batch = {'image': jax.random.uniform(jax.random.key(1), shape, jnp.float32, -1.0, 1.0)}
  compiled, warm = {}, {}
  for variant in _VARIANTS:
    compile_s, compiled[variant] = _compile(state, batch, variant)
    warm[variant], _ = harness.time_once(_steps(compiled[variant], state, batch, 1))
    log(f'{name} {variant}: compile {compile_s:.1f} s, warm-up step {warm[variant]:.2f} s')
  if max(warm.values()) > max_step_seconds:
    steps = 1
  timings = harness.time_alternating({v: _steps(compiled[v], state, batch, steps) for v in _VARIANTS}, rounds,
                                     warmup=0)
  return {'batch': config.batch_size, 'shape': shape, 'steps': steps,
          **{v: statistics.median(t.rates(steps * config.batch_size)) for v, t in timings.items()}}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--configs', default='emnist_letters,rock_paper_scissors,folder,mnist')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--max-step-seconds', type=float, default=5.0)
  args = parser.parse_args()
  log = lambda msg: print(msg, file=sys.stderr, flush=True)
  results = {name: benchmark_config(name, args.rounds, args.steps, args.max_step_seconds, log)
             for name in args.configs.split(',')}

  print(harness.header(__file__, sys.argv[1:], 'shared with other jobs'))
  print(f'jit(train.train_step) images/s, median of {args.rounds} alternating rounds.')
  print()
  rows = [[name, 'x'.join(map(str, r['shape'])), r['steps'], f'{r["stock"]:.1f}', f'{r["layers"]:.1f}',
           f'{r["layers"] / r["stock"]:.2f}x'] for name, r in results.items()]
  print(harness.markdown_table(['config', 'batch shape', 'steps/round', 'stock flax ops (img/s)',
                                'dcgan_jax.ops (img/s)', 'speedup'], rows, align='llrrrr'))


if __name__ == '__main__':
  main()
