"""Per-class recognition of the class-conditional MNIST DCGAN at equal steps, variant by variant.

Run from the repository root:

  python benchmarks/conditional.py [--epochs 5] [--seeds 0] [--variants shipped,ema,pytorch_init,...]
  python benchmarks/conditional.py --workdir=W [--checkpoint=best]   # a run main.py trained, scored the same way
  python benchmarks/conditional.py --time-rounds=3 [--variants ...]    # seconds per training step instead

Every variant trains `configs/mnist_conditional.py` on the 10,000 labelled MNIST test digits that ship with the
package, for the same steps on the same batches (`benchmarks/quality.py`'s `batch_order`), with `dcgan_jax.train_step`
under `jax.jit`:
- `shipped`: the config as shipped (`class_loss_weight` 0.3, PyTorch's initialization in the discriminator);
- `no_class_loss`, `class_loss_0.5`, `class_loss_1`: with `class_loss_weight` 0, 0.5 or 1;
- `flax_init`: with flax's initialization in the discriminator too;
- `ema`: with the generator's moving average (`config.ema_decay=0.999`), sampled from the average;
- `pytorch_init`: with PyTorch's initialization in the generator too (`model.generator.weight_init='pytorch'`);
- `conditional_batchnorm`: with per-class scales and shifts after G's BatchNorms
  (`model.generator.conditional_batchnorm`).
At every epoch's end 2,000 samples (the classes in turn) are scored as the trainer scores them and the epoch with the
lowest FID is the "best" one (the trainer's best checkpoint). The last and the best epoch's generators then draw
1,000 images of each class (mixed batches of the training batch size, the classes in turn, as training's fake
batches hold all classes), which our MNIST classifier recognises: the table gives the fraction recognised as the
class asked for, overall and for the worst class (the bar of issue 15: every class >= 0.90), and the FID of those
10,000 images. With `--workdir` it scores a run `main.py` trained instead (its `--checkpoint`, 'best' by default:
the trainer's best by FID), drawing and recognising the same way. With `--time-rounds=R` it times the variants' jitted
steps instead (batch 128 of the bundled digits, oneDNN's convolutions where the trainer uses them; each variant's 5
steps in turn within each of R rounds, `harness.time_alternating`) and gives each one's median seconds per step and
its ratio to the first variant's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import quality  # pylint: disable=g-import-not-at-top,wrong-import-position
import dcgan_jax  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.configs import mnist_conditional  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.eval import classifier  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.eval import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.ops.onednn import policy as onednn  # pylint: disable=g-import-not-at-top,wrong-import-position

PER_CLASS = 1000  # Images drawn per class for the final scores.
Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]
VARIANTS = ('shipped', 'no_class_loss', 'class_loss_0.5', 'class_loss_1', 'flax_init', 'ema', 'pytorch_init',
            'conditional_batchnorm')


def variant_config(variant: str, seed: int):
  """`configs/mnist_conditional.py` with `seed` and what `variant` changes."""
  config = mnist_conditional.get_config()
  config.seed = seed
  changes = {
      'shipped': {},
      'no_class_loss': {'class_loss_weight': 0.0},
      'class_loss_0.5': {'class_loss_weight': 0.5},
      'class_loss_1': {'class_loss_weight': 1.0},
      'flax_init': {'model.discriminator.weight_init': 'flax'},
      'ema': {'ema_decay': 0.999},
      'pytorch_init': {'model.generator.weight_init': 'pytorch'},
      'conditional_batchnorm': {'model.generator.conditional_batchnorm': True},
  }[variant]
  return harness.set_fields(config, changes)


def train_conditional(config, images: np.ndarray, labels: np.ndarray, order: np.ndarray,
                      steps_per_epoch: int) -> Iterator[Sampler]:
  """Trains on the batches of `order`; yields a sampler (z [N, latent], labels int32 [N]) -> images [N, H, W, C] of
  the generator at every epoch's end, sampling as the config samples (`model.sample_use_batch_stats`)."""
  state = quality.initial_state(config)
  real = jnp.asarray(input_pipeline.to_float(images, models.data_range(config)))
  real_labels = jnp.asarray(labels, jnp.int32)
  use_batch_stats = bool(config.model.sample_use_batch_stats)
  sample = jax.jit(lambda s, z, y: train.generate(s, z, y, use_batch_stats=use_batch_stats))
  step = jax.jit(lambda s, idx: train.train_step(s, {'image': real[idx], 'label': real_labels[idx]}))
  for i, idx in enumerate(order):
    with onednn.using(config.cpu_conv):
      state, _ = step(state, jnp.asarray(idx))
    if (i + 1) % steps_per_epoch == 0:
      def sampler(z: np.ndarray, y: np.ndarray, snapshot=state) -> np.ndarray:
        with onednn.using(config.cpu_conv):
          return np.asarray(sample(snapshot, jnp.asarray(z), jnp.asarray(y)))
      yield sampler


def draw(sampler: Sampler, num: int, config, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """`num` images, the classes in turn (0, 1, ..., 9, 0, ...), in batches of the training batch size; and their
  requested labels int32 [num]."""
  labels = np.arange(num, dtype=np.int32) % config.num_classes
  z = np.random.default_rng([seed, 12345]).uniform(-1.0, 1.0, (num, config.latent_dim)).astype(np.float32)
  b = config.batch_size
  return np.concatenate([sampler(z[i:i + b], labels[i:i + b]) for i in range(0, num, b)]), labels


def run_variant(variant: str, seed: int, epochs: int, images: np.ndarray, labels: np.ndarray,
                evaluator: evaluation.Evaluator) -> dict[str, float]:
  """Trains one variant; returns, for the last (`last_*`) and best (`best_*`) epoch: `fid`, `accuracy`,
  `worst` (the lowest per-class fraction) and `worst_class`; and `best_epoch`."""
  config = variant_config(variant, seed)
  order = quality.batch_order(images.shape[0], config.batch_size, seed, epochs)
  per_epoch = order.shape[0] // epochs
  best, epoch, last = None, 0, None
  for epoch, sampler in enumerate(train_conditional(config, images, labels, order, per_epoch), 1):
    fid = evaluator.evaluate(*draw(sampler, quality.SELECT_SAMPLES, config, seed))['fid']
    if best is None or fid <= best[0]:
      best = (fid, epoch, sampler)
    last = sampler
  result = {'best_epoch': float(best[1])}
  for name, sampler in (('last', last), ('best', best[2])):
    result.update({f'{name}_{k}': v for k, v in score(sampler, config, seed, evaluator).items() if k != 'per_class'})
  return result


def score(sampler: Sampler, config, seed: int, evaluator: evaluation.Evaluator) -> dict[str, float]:
  """`PER_CLASS` images of each class from `sampler`: their `fid`, the fraction recognised as asked (`accuracy`),
  the worst class's fraction (`worst`), that class (`worst_class`) and every class's (`per_class`, a dict)."""
  generated, requested = draw(sampler, PER_CLASS * config.num_classes, config, seed)
  scores = evaluator.evaluate(generated, requested)
  predicted, _ = classifier.predict_and_features(evaluator.variables, generated, evaluator.data_range)
  per_class = evaluation.per_class_accuracy(predicted, requested)
  worst = min(per_class, key=per_class.get)
  return {'fid': scores['fid'], 'accuracy': scores['class_accuracy'], 'worst': per_class[worst],
          'worst_class': float(worst), 'per_class': per_class}


def score_run(workdir: str, checkpoint: str, evaluator: evaluation.Evaluator) -> dict[str, float]:
  """`score` of a trained run's checkpoint ('best', 'latest' or a step), sampled as its config samples."""
  config, state = dcgan_jax.load(workdir, int(checkpoint) if checkpoint.isdigit() else checkpoint)
  use_batch_stats = bool(config.model.sample_use_batch_stats)
  sample = jax.jit(lambda s, z, y: train.generate(s, z, y, use_batch_stats=use_batch_stats))
  result = score(lambda z, y: np.asarray(sample(state, jnp.asarray(z), jnp.asarray(y))), config, 0, evaluator)
  return {**result, 'step': float(state.step)}


def time_steps(variants: list[str], rounds: int, images: np.ndarray, labels: np.ndarray, steps: int = 5) -> str:
  """A Markdown table of each variant's median milliseconds per training step and its ratio to the first's."""
  runs = {}
  for variant in variants:
    config = variant_config(variant, 0)
    state = quality.initial_state(config)
    real = jnp.asarray(input_pipeline.to_float(images[:config.batch_size], models.data_range(config)))
    batch = {'image': real, 'label': jnp.asarray(labels[:config.batch_size], jnp.int32)}
    step = jax.jit(train.train_step)

    def run(state=state, step=step, batch=batch, conv=config.cpu_conv):
      with onednn.using(conv):
        s = state
        for _ in range(steps):
          s, _ = step(s, batch)
        return s
    runs[variant] = run
  timings = harness.time_alternating(runs, rounds, warmup=1)
  per_step = {name: statistics.median(t.rounds) / steps for name, t in timings.items()}
  first = per_step[variants[0]]
  rows = [[name, f'{1000 * sec:.0f}', f'{sec / first:.2f}x'] for name, sec in per_step.items()]
  return harness.markdown_table(['variant', 'ms/step (median)', f'vs {variants[0]}'], rows, align='lrr')


def _row(variant: str, seed: int, r: dict[str, float]) -> list[str]:
  cells = [variant, str(seed)]
  for name in ('last', 'best'):
    cells += [f'{r[name + "_fid"]:.1f}', f'{r[name + "_accuracy"]:.3f}',
              f'{r[name + "_worst"]:.3f} ({r[name + "_worst_class"]:.0f})']
  return cells[:5] + [f'{r["best_epoch"]:.0f}'] + cells[5:]


def main(argv: Optional[list[str]] = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--epochs', type=int, default=5, help='epochs over the 10,000 digits (78 steps each)')
  parser.add_argument('--seeds', default='0', help='comma-separated seeds')
  parser.add_argument('--variants', default=','.join(VARIANTS), help=f'comma-separated, of {", ".join(VARIANTS)}')
  parser.add_argument('--workdir', default='', help='score this trained run instead of training the variants')
  parser.add_argument('--checkpoint', default='best', help="with --workdir: 'best', 'latest' or a step")
  parser.add_argument('--time-rounds', type=int, default=0, help='> 0: time the variants\' steps, this many rounds')
  args = parser.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(',') if s]
  variants = [v for v in args.variants.split(',') if v]
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    parser.error(f'unknown --variants {", ".join(unknown)}; choose from {", ".join(VARIANTS)}')
  if not seeds or args.epochs < 1:
    parser.error('give at least one seed and --epochs >= 1')
  config = mnist_conditional.get_config()
  config.data.source = 'bundled'
  images = input_pipeline.load_images(config.data)
  labels = input_pipeline.load_labels(config.data)
  evaluator = evaluation.build_evaluator(config, images, quality.CACHE_DIR)
  print(harness.header(__file__, sys.argv[1:] if argv is None else argv, f'load {harness.load_average()}'))
  if args.time_rounds > 0:
    print(time_steps(variants, args.time_rounds, images, labels))
    return
  if args.workdir:
    result = score_run(args.workdir, args.checkpoint, evaluator)
    print(f'step {result["step"]:.0f}: FID {result["fid"]:.1f}, recognised {result["accuracy"]:.3f}, worst '
          f'{result["worst"]:.3f} (class {result["worst_class"]:.0f})\n')
    print(harness.markdown_table(['class', *map(str, result['per_class'])],
                                 [['recognised', *(f'{v:.3f}' for v in result['per_class'].values())]]))
    return
  headers = ['variant', 'seed', 'last FID', 'last recognised', 'last worst (class)', 'best epoch', 'best FID',
             'best recognised', 'best worst (class)']
  print(harness.markdown_row(headers) + '\n' + harness.markdown_row(['---'] * len(headers)), flush=True)
  for seed in seeds:
    for variant in variants:
      result = run_variant(variant, seed, args.epochs, images, labels, evaluator)
      print(harness.markdown_row(_row(variant, seed, result)), flush=True)


if __name__ == '__main__':
  main()
