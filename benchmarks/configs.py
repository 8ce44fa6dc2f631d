"""Training throughput of every config in configs/, each at its own batch size and schedule, on this machine.

Run from the repository root:

  python benchmarks/configs.py [--configs mnist,folder:64,...] [--steps 5]

For each config, the step functions its schedule runs (`parallel.make_parallel_train_step` for each of the schedule's
step kinds, the dataset on the device as uint8, state donated) are timed on random images of the config's shape:
one call to compile, then `--steps` single-step calls each, median. Real images per second counts the images D
reads (`batch_size` per D update); for schedules with G-only steps the G-update rate is listed beside it.

The table is for comparing configs with one another on one machine: they run one after another in one process, so
a load change between rows moves them; rerun when the load average printed under the table was high.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.trainer import schedules  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import parallel
from dcgan_jax import train_state

CONFIGS = ('mnist', 'fashion_mnist', 'mnist_mlp', 'fashion_mnist_mlp', 'mnist_fnn', 'emnist_letters', 'cifar10',
           'folder:64', 'folder', 'rock_paper_scissors')


def load_config(spec: str):
  """`name` or `name:arg` (the argument goes to get_config, as in `--config=configs/name.py:arg`)."""
  name, _, arg = spec.partition(':')
  module = importlib.import_module(f'dcgan_jax.configs.{name}')
  return module.get_config(arg) if arg else module.get_config()


def measure(spec: str, num_steps: int) -> dict:
  """Seconds per step of each of the config's step kinds, and what they make of images/s."""
  config = load_config(spec)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data'))
  size, channels, batch = config.data.image_size, config.data.channels, config.batch_size
  rng = np.random.default_rng(0)
  data = jax.device_put(rng.integers(0, 256, (4 * batch, size, size, channels), dtype=np.uint8), replicated)
  heldout = jax.device_put(rng.integers(0, 256, (batch, size, size, channels), dtype=np.uint8),
                           jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
  state = jax.device_put(train_state.create_train_state(config, jax.random.key(0)), replicated)
  schedule = schedules.Schedule(config, batches_per_epoch=4)
  per_kind = {}
  compile_s = 0.0
  for kind in schedule.kinds():
    fn = parallel.make_parallel_train_step(mesh, config.model.sync_batchnorm, models.data_range(config), True, kind)
    indices = jax.device_put(np.arange(kind.rows * batch, dtype=np.int32).reshape(kind.rows, batch) % (4 * batch),
                             batch_sharding)
    extra = (heldout,) if kind.check == 'd_accuracy' else ()
    seconds, (state, _) = harness.time_once(fn, state, data, indices, *extra)
    compile_s += seconds
    chain = {'state': state}

    def step(fn=fn, indices=indices, extra=extra, chain=chain):
      chain['state'], metrics = fn(chain['state'], data, indices, *extra)
      return metrics

    per_kind[kind] = harness.time_calls(step, warmup=0, repeats=num_steps).median
    state = chain['state']
  return {'config': config, 'per_kind': per_kind, 'compile_s': compile_s,
          'g_params': models.count_params(state.g_params), 'd_params': models.count_params(state.d_params)}


def describe(result: dict) -> tuple[str, str]:
  """(real images/s, what a step is) for the table."""
  config, per_kind = result['config'], result['per_kind']
  batch = config.batch_size
  parts = []
  for kind, seconds in per_kind.items():
    parts.append(f'{kind.d_steps}D+{kind.g_steps}G{"+" + kind.check if kind.check else ""} {seconds:.3f} s')
  d_kinds = [(k, s) for k, s in per_kind.items() if k.d_steps]
  images_per_s = statistics.mean(k.d_steps * batch / s for k, s in d_kinds)
  g_only = [(k, s) for k, s in per_kind.items() if not k.d_steps]
  if g_only:
    parts.append(f'G-only {statistics.mean(batch / s for _, s in g_only):.0f} img/s')
  return f'{images_per_s:.1f}', '; '.join(parts)


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated config names (name:arg allowed)')
  parser.add_argument('--steps', type=int, default=5, help='timed calls per step kind (median)')
  argv = sys.argv[1:] if argv is None else argv
  args = parser.parse_args(argv)
  if args.steps < 1:
    parser.error('--steps must be >= 1')
  load_start = harness.load_average()
  rows = []
  for spec in [s.strip() for s in args.configs.split(',') if s.strip()]:
    print(f'[{time.strftime("%H:%M:%S")}] {spec}', file=sys.stderr, flush=True)
    result = measure(spec, args.steps)
    config = result['config']
    images_per_s, steps = describe(result)
    size = config.data.image_size
    family = f'{config.model.generator.family} / {config.model.discriminator.family}'
    rows.append([spec, family, f'{size}x{size}x{config.data.channels}', config.batch_size, config.schedule,
                 f'{result["g_params"]:,} / {result["d_params"]:,}', f'{result["compile_s"]:.1f}', steps, images_per_s])
  print(harness.header(__file__, argv,
                       f'1-minute load average at start {load_start}, at end {harness.load_average()}'))
  print()
  print(harness.markdown_table(['config', 'family', 'image', 'batch', 'schedule', 'G / D parameters', 'compile s',
                                's per step (kind)', 'real img/s'], rows))


if __name__ == '__main__':
  main()
