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
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

import dcgan_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position


def _time(step, state, batch, steps: int) -> float:
  state, _ = step(state, batch)  # Compile and warm up.
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - start) / steps


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
  print(f'machine: {machine.cpu_model()}, {os.cpu_count()} CPUs visible, {platform.system()}, '
        f'jax {jax.__version__} on {jax.default_backend()} ({jax.device_count()} device)')
  print(f'command: python benchmarks/population.py --configs {args.configs} --members {args.members} '
        f'--steps {args.steps} --batch {args.batch}\n')
  print(f'| config | members | batch | population s/step | separate s/step | separate / population |')
  print('|---|---|---|---|---|---|')
  for name in args.configs.split(','):
    pop, sep = bench(name, args.members, args.steps, args.batch)
    print(f'| {name} | {args.members} | {args.batch} | {pop:.3f} | {sep:.3f} | {sep / pop:.2f}x |', flush=True)


if __name__ == '__main__':
  main()
