"""A population of P runs under one `jax.vmap(train_step)` against P separate runs, per config, in one process.

Run from the repository root:

  python benchmarks/population.py [--configs mnist_mlp,mnist] [--members 8] [--steps 3] [--batch 64]

Both sides train P members (seeds 0..P-1, learning rates 1e-4 * 2^(i/2)) on the same random batch
`uniform [-1, 1] of [batch, S, S, C]`:

* "population": `create_population(config, seeds, **{'g_optimizer.learning_rate': lrs})`, one compiled
  `jit(vmap(train_step, in_axes=(0, None)))` call per step for all members;
* "separate": P states from `create_train_state`, each stepped by one shared `jit(train_step)` (equal static
  fields: it compiles once), P calls per step.

Each side is compiled and warmed up with one step, then timed over `--steps` steps (wall clock, after
`block_until_ready`). Prints a Markdown table: seconds per step of all P members, and separate / population.
"""

import argparse
import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

import dcgan_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position


def _time(step, state, batch, steps: int) -> float:
  """Seconds per step over `steps` steps chained from `state`, after one compile + warm-up step."""
  _, (state, _) = harness.time_once(step, state, batch)
  chain = {'state': state}

  def one_step():
    chain['state'], metrics = step(chain['state'], batch)
    return chain['state'], metrics

  return harness.time_calls(one_step, warmup=0, repeats=1, calls=steps).per_call


def bench(name: str, members: int, steps: int, batch_size: int) -> tuple[float, float]:
  """(population, separate) seconds per step of all members for `configs/<name>.py` at `batch_size`."""
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  config.batch_size = batch_size
  size = models.output_size(config)
  batch = {'image': jax.random.uniform(jax.random.key(9), (batch_size, size, size, config.data.channels),
                                       minval=-1, maxval=1)}
  seeds = list(range(members))
  lrs = [1e-4 * 2 ** (i / 2) for i in seeds]
  population = dcgan_jax.create_population(config, seeds, **{'g_optimizer.learning_rate': lrs})
  pop_time = _time(jax.jit(jax.vmap(dcgan_jax.train_step, in_axes=(0, None))), population, batch, steps)
  del population
  singles = []
  for seed, lr in zip(seeds, lrs):
    config.g_optimizer.learning_rate = lr
    singles.append(dcgan_jax.create_train_state(config, jax.random.key(seed)))
  step = jax.jit(dcgan_jax.train_step)

  def all_members(states, batch):
    out = [step(s, batch) for s in states]
    return [s for s, _ in out], out[-1][1]

  sep_time = _time(all_members, singles, batch, steps)
  return pop_time, sep_time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default='mnist_mlp,mnist')
  parser.add_argument('--members', type=int, default=8)
  parser.add_argument('--steps', type=int, default=3)
  parser.add_argument('--batch', type=int, default=64)
  args = parser.parse_args()
  argv = ['--configs', args.configs, '--members', str(args.members), '--steps', str(args.steps), '--batch',
          str(args.batch)]
  print(harness.header(__file__, argv) + '\n')
  headers = ['config', 'members', 'batch', 'population s/step', 'separate s/step', 'separate / population']
  # Printed row by row as the configs finish.
  print(harness.markdown_table(headers, []), flush=True)
  for name in args.configs.split(','):
    pop, sep = bench(name, args.members, args.steps, args.batch)
    print(harness.markdown_row([name, args.members, args.batch, f'{pop:.3f}', f'{sep:.3f}', f'{sep / pop:.2f}x']),
          flush=True)


if __name__ == '__main__':
  main()
