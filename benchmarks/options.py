"""The per-step cost of the GAN toolbox options (EMA, R1/R2, DiffAugment, spectral normalization) on the MNIST
DCGAN, as ratios to the plain step timed in the same rounds.

Run from the repository root:

  python benchmarks/options.py [--options base,ema,r1,r1_lazy,r2,diffaugment,spectral_norm,all] [--rounds 3]
      [--steps 5] [--batch 128]

Each variant is the training loop's step function (`throughput.OursRunner`: `make_parallel_train_step` over all
local devices, the uint8 dataset on the device, one step per call, state donated) for `configs/mnist.py` with the
option's fields set. The variants are timed in turn within each round (`harness.time_alternating`), so that the
load of a shared machine hits them alike; the table gives the median seconds per step and its ratio to `base`.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Optional

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import throughput  # pylint: disable=g-import-not-at-top,wrong-import-position

# Variant name -> (config overrides, what it is).
OPTIONS = {
    'base': ({}, 'no option'),
    'ema': ({'ema_decay': 0.999}, 'ema_decay=0.999'),
    'r1': ({'r1_weight': 1.0, 'r_every': 1}, 'r1_weight=1, r_every=1 (R1 on every D update)'),
    'r1_lazy': ({'r1_weight': 1.0, 'r_every': 16}, 'r1_weight=1, r_every=16 (on the CPU path: computed every update)'),
    'r2': ({'r2_weight': 1.0, 'r_every': 1}, 'r2_weight=1, r_every=1'),
    'diffaugment': ({'diffaugment': 'color,translation,cutout'}, "diffaugment='color,translation,cutout'"),
    'spectral_norm': ({'model.discriminator.spectral_norm': True}, 'model.discriminator.spectral_norm=True'),
    'all': ({'ema_decay': 0.999, 'r1_weight': 1.0, 'r_every': 16, 'diffaugment': 'color,translation,cutout'},
            'ema + r1_lazy + diffaugment'),
}


def config_for(option: str, batch: int):
  """`configs/mnist.py` with `option`'s fields and the batch size."""
  config = throughput.mnist_dcgan_config()
  config.batch_size = batch
  for field, value in OPTIONS[option][0].items():
    *path, name = field.split('.')  # 'model.discriminator.spectral_norm': a field of a nested section.
    functools.reduce(lambda section, key: section[key], path, config)[name] = value
  return config


def measure(options: list[str], rounds: int, steps: int, batch: int, log) -> dict[str, list[float]]:
  """Seconds per step of each option in each round (compiled and warmed up first)."""
  runners = {}
  for option in options:
    log(f'{option}: compiling')
    runners[option] = throughput.OursRunner(config_for(option, batch))
    harness.block(runners[option].run(1))
  log(f'timing {rounds} rounds x {steps} steps of {len(options)} variants')
  timings = harness.time_alternating({name: (lambda r=runner: r.run(steps)) for name, runner in runners.items()},
                                     rounds, warmup=1)
  return {name: [seconds / steps for seconds in timing.rounds] for name, timing in timings.items()}


def format_table(per_step: dict[str, list[float]]) -> str:
  base = statistics.median(per_step['base']) if 'base' in per_step else None
  lines = []
  for name, seconds in per_step.items():
    median = statistics.median(seconds)
    ratio = f'{median / base:.2f}x' if base else 'n/a'
    lines.append([name, OPTIONS[name][1], f'{1000 * median:.0f}', ratio, ', '.join(f'{1000 * s:.0f}' for s in seconds)])
  return harness.markdown_table(['option', 'fields', 'ms/step (median)', 'vs base', 'ms/step per round'], lines,
                                align='llrrl')


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--options', default=','.join(OPTIONS), help=f'comma list of {",".join(OPTIONS)}')
  parser.add_argument('--rounds', type=int, default=3, help='alternating timing rounds; the median is reported')
  parser.add_argument('--steps', type=int, default=5, help='steps per round and variant')
  parser.add_argument('--batch', type=int, default=128, help='batch size (configs/mnist.py: 128)')
  args = parser.parse_args(argv)
  args.names = [n.strip() for n in args.options.split(',') if n.strip()]
  unknown = [n for n in args.names if n not in OPTIONS]
  if unknown:
    parser.error(f'unknown option(s) {unknown}; choose from {list(OPTIONS)}')
  if args.rounds < 1 or args.steps < 1 or args.batch < 1:
    parser.error('--rounds, --steps and --batch must be >= 1')
  return args


def main(argv: Optional[list[str]] = None) -> None:
  args = _parse_args(argv)
  log = lambda msg: print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)
  load_start = harness.load_average()
  per_step = measure(args.names, args.rounds, args.steps, args.batch, log)
  print(harness.header(__file__, sys.argv[1:] if argv is None else argv))
  print(f'1-minute load average at start {load_start}, at end {harness.load_average()} (other processes share the '
        'cores)  ')
  print(f'MNIST DCGAN (configs/mnist.py), batch {args.batch}, {args.rounds} alternating rounds of {args.steps} steps '
        'per variant; the step function of the training loop, one step per call.')
  print()
  print(format_table(per_step))


if __name__ == '__main__':
  main()
