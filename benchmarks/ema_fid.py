"""FID of the moving average of G's weights against the raw weights, from the same checkpoints of one run.

Run from the repository root, on a run trained with `config.ema_decay` > 0 on a labelled 28x28x1 dataset:

  python benchmarks/ema_fid.py --workdir=W [--checkpoints=latest] [--num=2000] [--seed=0]

The EMA does not change training, so the raw weights of an EMA run are those of the same run without it: both
columns are at equal steps by construction. Both generators sample the same noise, with BatchNorm normalizing by
the batch's own statistics and by the raw generator's running averages (`generate(..., use_batch_stats=...)`); the
scores come from the run's evaluator (`evaluation.build_evaluator`: the cached feature classifier of the dataset).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

import jax
import numpy as np

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.eval import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import sample  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position


def scores(workdir: str, checkpoint: str, num: int, seed: int, evaluator) -> list[list[str]]:
  """Table rows (checkpoint, BatchNorm mode, generator, FID, coverage, precision, recall) of one checkpoint."""
  config, state = sample.load(workdir, checkpoint)
  z = train.sample_noise(jax.random.key(seed), (num, config.latent_dim), config.noise)
  rows = []
  for batch_stats in (True, False):
    for generator in ('ema', 'raw'):
      fn = jax.jit(lambda s, z, b=batch_stats, g=generator: train.generate(s, z, use_batch_stats=b, generator=g))
      images = np.concatenate([np.asarray(fn(state, z[i:i + 500])) for i in range(0, num, 500)])
      result = evaluator.evaluate(images)
      rows.append([str(int(state.step)), 'batch' if batch_stats else 'running', generator, f'{result["fid"]:.1f}',
                   f'{result["coverage"]:.0f}', f'{result["precision"]:.3f}', f'{result["recall"]:.3f}'])
  return rows


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True, help='a run trained with config.ema_decay > 0')
  parser.add_argument('--checkpoints', default='latest', help="comma list of steps, or 'latest'")
  parser.add_argument('--num', type=int, default=2000, help='generated images per score (a multiple of 500)')
  parser.add_argument('--seed', type=int, default=0, help='seed of the noise, shared by both generators')
  args = parser.parse_args(argv)
  config = sample.load_run_config(args.workdir)
  if not config.get('ema_decay', 0.0) > 0:
    parser.error(f'{args.workdir} was trained without an EMA (config.ema_decay=0)')
  images = input_pipeline.load_images(config.data)
  evaluator = evaluation.build_evaluator(config, images, config.eval_cache_dir)
  rows = []
  for checkpoint in args.checkpoints.split(','):
    rows += scores(args.workdir, checkpoint.strip(), args.num, args.seed, evaluator)
  print(harness.header(__file__, sys.argv[1:] if argv is None else argv))
  print(f'Run: {args.workdir} (ema_decay {config.ema_decay}, batch {config.batch_size}); {args.num} samples per row, '
        f'the same noise (seed {args.seed}) for every row; BatchNorm: the batch\'s statistics or the raw '
        "generator's running averages.")
  print()
  print(harness.markdown_table(['step', 'BatchNorm', 'generator', 'FID', 'coverage', 'precision', 'recall'], rows,
                               align='rllrrrr'))


if __name__ == '__main__':
  main()
