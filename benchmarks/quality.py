"""Sample quality side by side: our MNIST DCGAN against the PyTorch reference of the same networks, same steps.

Run from the repository root:

  python benchmarks/quality.py [--epochs 5] [--seeds 0,1,2] [--samples 10000]
      [--variants ours,ours_ema,ours_flax_init,ours_pytorch_init,ours_pytorch_init_g,
       ours_pytorch_init_flax_output,ours_flax_init_pytorch_output,ours_uniform_init,ours_spectral_norm,torch]

Every variant trains on the 10,000 MNIST test digits that ship with the package, with `configs/mnist.py`'s defaults
(batch 128, two Adams at 2e-4 / beta1 0.5, uniform z, BatchNorm momentum and epsilon as configured), the same data
order (one permutation per (seed, epoch), the last partial batch dropped) and the same number of steps:
- `ours`: `dcgan_jax.train_step` under `jax.jit`, `configs/mnist.py` as shipped (the generator drawn by flax's
  initialization, lecun_normal kernels and zero biases; the discriminator by PyTorch's, `weight_init='pytorch'`:
  kernels and biases uniform in +-1/sqrt(fan_in)), with the convolution library `config.cpu_conv` selects, as the
  trainer does (oneDNN's on the CPU where it builds).
- `ours_ema`: `ours` with the generator's moving average (`config.ema_decay=0.999`, warmed up as the trainer does),
  sampled from the average (the trainer's default when it is on); training is the same as `ours`.
- `ours_flax_init`: flax's initialization in both networks (`configs/mnist.py` before issue 15's change).
- `ours_pytorch_init`: PyTorch's in both, the reference's own; `ours_pytorch_init_g`: PyTorch's in the generator,
  flax's in the discriminator.
- `ours_pytorch_init_flax_output`: `ours_pytorch_init` with the generator's output layer as flax draws it (6.5x
  smaller kernels); `ours_flax_init_pytorch_output`: `ours_flax_init` with that layer as PyTorch draws it.
- `ours_uniform_init`: `ours` with kernels redrawn by `variance_scaling(1/3, 'fan_in', 'uniform')` over flax's fan-in
  (in * kh * kw for every kernel) and zero biases: the rule the lead of issue 15 names.
- `ours_spectral_norm`: `ours` with spectral normalization of D's layers (`model.discriminator.spectral_norm`).
- `torch`: the PyTorch reference of benchmarks/throughput.py (`build_torch_models`, PyTorch's default init), one
  D update on real then detached fake, then one G update on the same fake batch, as the PyTorch DCGAN example.
Samples are drawn as the config samples (`model.sample_use_batch_stats`: BatchNorm over each batch of z), in
batches of the training batch size, and scored against the real digits in our MNIST classifier's feature space
(`dcgan_jax.eval.evaluation.Evaluator`: FID, classes covered, precision and recall) at the last epoch; and, as the
trainer keeps its best checkpoint, the epoch whose generator scored the lowest FID on 2,000 samples at its end, with
its FID and classes on the full sample count ("best"), for every variant alike. The table reports each seed and
the mean over seeds.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from typing import Any, Callable, Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import throughput  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import train_state
from dcgan_jax.configs import mnist  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.eval import evaluation  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.ops.onednn import policy as onednn  # pylint: disable=g-import-not-at-top,wrong-import-position

SELECT_SAMPLES = 2000  # Samples per epoch-end evaluation that picks the best epoch (the trainer's eval_num_samples).
Sampler = Callable[[np.ndarray], np.ndarray]
VARIANTS = ('ours', 'ours_ema', 'ours_flax_init', 'ours_pytorch_init', 'ours_pytorch_init_g',
            'ours_pytorch_init_flax_output', 'ours_flax_init_pytorch_output', 'ours_uniform_init', 'ours_spectral_norm',
            'torch')
CACHE_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'dcgan_jax')


def batch_order(num_images: int, batch_size: int, seed: int, epochs: int) -> np.ndarray:
  """int64 [epochs * (num_images // batch_size), batch_size]: image indices of every step, one permutation per
  (seed, epoch), the last partial batch of each epoch dropped. Every variant reads the same batches."""
  per_epoch = num_images // batch_size
  order = [np.random.default_rng([seed, epoch]).permutation(num_images)[:per_epoch * batch_size]
           for epoch in range(epochs)]
  return np.concatenate(order).reshape(-1, batch_size)


def uniform_fan_in_init(params: Any, key: jax.Array) -> Any:
  """`params` with every kernel redrawn by `variance_scaling(1/3, 'fan_in', 'uniform')` (flax's fan-in: in * kh * kw,
  so uniform(+-1/sqrt(fan_in))); biases and BatchNorm parameters unchanged."""
  init = jax.nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  leaves = [init(jax.random.fold_in(key, i), leaf.shape, leaf.dtype)
            if getattr(path[-1], 'key', None) == 'kernel' else leaf for i, (path, leaf) in enumerate(flat)]
  return jax.tree.unflatten(jax.tree.structure(params), leaves)


def initial_state(config, init: Optional[Callable[[Any, jax.Array], Any]] = None):
  """`create_train_state(config, key(config.seed))`, its parameters redrawn by `init(params, key)` if given. The
  optimizer states are kept: Adam's initial state does not depend on the parameters' values, and it holds the
  learning rate (`tx.init` would start from the placeholder 0 and never train)."""
  key = jax.random.key(config.seed)
  state = train_state.create_train_state(config, key)
  if init is not None:
    g_key, d_key = jax.random.split(jax.random.fold_in(key, 1))
    state = state.replace(g_params=init(state.g_params, g_key), d_params=init(state.d_params, d_key))
  return state


def train_ours(config, images: np.ndarray, order: np.ndarray, steps_per_epoch: int,
               init: Optional[Callable[[Any, jax.Array], Any]] = None) -> Iterator[Sampler]:
  """Trains with `dcgan_jax.train_step` from `initial_state(config, init)`; yields a sampler
  z [N, latent] -> float32 images [N, H, W, C] of the generator at the end of every epoch (each keeps its state)."""
  state = initial_state(config, init)
  real = jnp.asarray(input_pipeline.to_float(images, models.data_range(config)))
  use_batch_stats = bool(config.model.sample_use_batch_stats)
  sample = jax.jit(lambda s, z: train.generate(s, z, use_batch_stats=use_batch_stats))

  def sampler_of(snapshot) -> Sampler:
    def sampler(z: np.ndarray) -> np.ndarray:
      with onednn.using(config.cpu_conv):  # Traced (per batch shape) under the same library.
        return np.asarray(sample(snapshot, jnp.asarray(z)))
    return sampler

  step = jax.jit(lambda s, idx: train.train_step(s, {'image': real[idx]}))  # No donation: epochs keep states.
  for i, idx in enumerate(order):
    # The convolution library the trainer would use; the step is traced at its first call, inside the block. The
    # block is entered per call rather than around the loop so that the setting never leaks to the consumer of the
    # yielded samplers.
    with onednn.using(config.cpu_conv):
      state, _ = step(state, jnp.asarray(idx))
    if (i + 1) % steps_per_epoch == 0:
      yield sampler_of(state)


def train_torch(config, images: np.ndarray, order: np.ndarray, steps_per_epoch: int) -> Iterator[Sampler]:
  """Trains the PyTorch reference on the same batches; yields the same kind of sampler at every epoch's end."""
  import torch  # pylint: disable=g-import-not-at-top

  runner = throughput.TorchRunner(config)  # Seeded with config.seed; default PyTorch init.
  real = torch.from_numpy(np.ascontiguousarray(
      input_pipeline.to_float(images, models.data_range(config)).transpose(0, 3, 1, 2)))
  for i, idx in enumerate(order):
    runner.real = real[torch.from_numpy(idx)]
    runner.step()
    if (i + 1) % steps_per_epoch == 0:
      generator = copy.deepcopy(runner.generator)
      if not config.model.sample_use_batch_stats:
        generator.eval()

      def sample(z: np.ndarray, generator=generator) -> np.ndarray:
        with torch.no_grad():
          return generator(torch.from_numpy(np.asarray(z))).numpy().transpose(0, 2, 3, 1)
      yield sample


def _samples(sampler: Sampler, num: int, batch: int, latent_dim: int, seed: int) -> np.ndarray:
  z = np.random.default_rng([seed, 12345]).uniform(-1.0, 1.0, (num, latent_dim)).astype(np.float32)
  return np.concatenate([sampler(z[i:i + batch]) for i in range(0, num, batch)])


# Each variant's generator `weight_init`, its `output_weight_init` and the discriminator's `weight_init`; a variant
# not named keeps the config's.
INITS = {'ours_flax_init': ('flax', '', 'flax'), 'ours_pytorch_init': ('pytorch', '', 'pytorch'),
         'ours_pytorch_init_g': ('pytorch', '', 'flax'), 'ours_pytorch_init_flax_output': ('pytorch', 'flax', 'pytorch'),
         'ours_flax_init_pytorch_output': ('flax', 'pytorch', 'flax')}


def variant_config(variant: str, seed: int):
  """`configs/mnist.py` with `seed` and what `variant` changes."""
  config = mnist.get_config()
  config.seed = seed
  if variant in INITS:
    g, d = config.model.generator, config.model.discriminator
    g.weight_init, g.output_weight_init, d.weight_init = INITS[variant]
  config.model.discriminator.spectral_norm = variant == 'ours_spectral_norm'
  if variant == 'ours_ema':
    config.ema_decay = 0.999
  return config


def run_variant(variant: str, seed: int, epochs: int, num_samples: int, images: np.ndarray,
                evaluator: evaluation.Evaluator) -> dict[str, float]:
  """Trains one variant for `epochs` epochs from `seed`; scores `num_samples` samples of the last epoch's generator
  and of the best epoch's, picked as the trainer picks its best checkpoint (FID of `SELECT_SAMPLES` samples at
  each epoch's end). Returns the last epoch's scores, `best_epoch`, `best_fid`, `best_coverage`, `steps`, `seconds`
  (training only)."""
  config = variant_config(variant, seed)
  order = batch_order(images.shape[0], config.batch_size, seed, epochs)
  per_epoch = order.shape[0] // epochs
  if variant == 'torch':
    epochs_iter = train_torch(config, images, order, per_epoch)
  else:
    epochs_iter = train_ours(config, images, order, per_epoch,
                             uniform_fan_in_init if variant == 'ours_uniform_init' else None)
  draw = lambda sampler, num: _samples(sampler, num, config.batch_size, config.latent_dim, seed)
  seconds, best, epoch = 0.0, None, 0
  while True:
    start = time.perf_counter()
    sampler = next(epochs_iter, None)
    seconds += time.perf_counter() - start
    if sampler is None:
      break
    epoch += 1
    fid = evaluator.evaluate(draw(sampler, SELECT_SAMPLES))['fid']
    if best is None or fid <= best[0]:
      best = (fid, epoch, sampler)
    last = sampler
  scores = evaluator.evaluate(draw(last, num_samples))
  best_scores = scores if best[1] == epoch else evaluator.evaluate(draw(best[2], num_samples))
  return {**scores, 'best_epoch': float(best[1]), 'best_fid': best_scores['fid'],
          'best_coverage': best_scores['coverage'], 'steps': float(order.shape[0]), 'seconds': seconds}


def _row(variant: str, seed: Any, r: dict[str, float]) -> list[str]:
  return [variant, str(seed), f'{r["steps"]:.0f}', f'{r["fid"]:.1f}', f'{r["coverage"]:.0f}/10',
          f'{r["precision"]:.3f}', f'{r["recall"]:.3f}', f'{r["best_epoch"]:.0f}', f'{r["best_fid"]:.1f}',
          f'{r["best_coverage"]:.0f}/10', f'{r["seconds"]:.0f}']


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--epochs', type=int, default=5, help='epochs over the 10,000 digits (78 steps each)')
  parser.add_argument('--seeds', default='0,1,2', help='comma-separated seeds')
  parser.add_argument('--variants', default=','.join(VARIANTS), help=f'comma-separated, of {", ".join(VARIANTS)}')
  parser.add_argument('--samples', type=int, default=10000, help='generated images scored per run')
  args = parser.parse_args(argv)
  args.seeds = [int(s) for s in args.seeds.split(',') if s]
  args.variants = [v for v in args.variants.split(',') if v]
  unknown = sorted(set(args.variants) - set(VARIANTS))
  if unknown:
    parser.error(f'unknown --variants {", ".join(unknown)}; choose from {", ".join(VARIANTS)}')
  if not args.seeds or args.epochs < 1 or args.samples < 10:
    parser.error('give at least one seed, --epochs >= 1 and --samples >= 10')
  return args


def main(argv: Optional[list[str]] = None) -> None:
  args = _parse_args(argv)
  import torch  # pylint: disable=g-import-not-at-top

  config = mnist.get_config()
  config.data.source = 'bundled'
  images = input_pipeline.load_images(config.data)
  evaluator = evaluation.build_evaluator(config, images, CACHE_DIR)
  print(harness.header(__file__, sys.argv[1:] if argv is None else argv, f'torch {torch.__version__}',
                       f'load {harness.load_average()}'))
  headers = ['variant', 'seed', 'steps', 'FID', 'classes', 'precision', 'recall', 'best epoch', 'best FID',
             'best classes', 'train s']
  print(harness.markdown_row(headers) + '\n' + harness.markdown_row(['---'] * len(headers)), flush=True)
  results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
  for seed in args.seeds:
    for variant in args.variants:  # Seed-major: drift of the shared machine hits every variant alike.
      results[variant].append(run_variant(variant, seed, args.epochs, args.samples, images, evaluator))
      print(harness.markdown_row(_row(variant, seed, results[variant][-1])), flush=True)
  for variant, runs in results.items():
    mean = {k: statistics.mean(r[k] for r in runs) for k in runs[0]}
    print(harness.markdown_row(_row(f'**{variant}**', 'mean', mean)), flush=True)


if __name__ == '__main__':
  main()
