"""Times forward+backward of flax ConvTranspose vs dcgan_jax.layers.ConvTranspose.

Run from the repository root:

  python benchmarks/conv_transpose.py [--batch 128] [--reps 7]

Prints a markdown table. The two implementations are timed alternately in one
run so that machine-load drift affects both equally; each timing is the median
over `--reps` jitted calls after a warm-up (compile) call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import machine  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import layers  # pylint: disable=g-import-not-at-top

# (name, input [H, W, Cin], Cout, kernel, stride, padding): the two stride-2
# upsampling layers of the MNIST DCGAN generator.
_LAYERS = [
    ('7x7x256 -> 14x14x128', (7, 7, 256), 128, 5, 2, 'SAME'),
    ('14x14x128 -> 28x28x1', (14, 14, 128), 1, 5, 2, 'SAME'),
]


def _train_step(module: nn.Module):
  """Jitted (params, x, cotangent) -> grads w.r.t. params and x."""

  def loss(params, x, cotangent):
    y = module.apply({'params': params}, x)
    return jnp.sum(y * cotangent)

  return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _time_once(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--reps', type=int, default=7)
  args = parser.parse_args()

  rows = []
  for name, in_shape, features, k, s, padding in _LAYERS:
    key_x, key_p, key_c = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(key_x, (args.batch, *in_shape), jnp.float32)
    kwargs = dict(features=features, kernel_size=(k, k), strides=(s, s),
                  padding=padding)
    stock = nn.ConvTranspose(**kwargs)
    ours = layers.ConvTranspose(**kwargs)
    # One params tree for both: the layers are parameter-compatible.
    params = stock.init(key_p, x)['params']
    y_shape = jax.eval_shape(lambda p: stock.apply({'params': p}, x), params)
    cotangent = jax.random.normal(key_c, y_shape.shape, jnp.float32)

    steps = {'flax': _train_step(stock), 'ours': _train_step(ours)}
    for step in steps.values():  # compile + warm-up
      jax.block_until_ready(step(params, x, cotangent))
    times = {impl: [] for impl in steps}
    for _ in range(args.reps):
      for impl, step in steps.items():
        times[impl].append(_time_once(step, params, x, cotangent))
    flax_s = statistics.median(times['flax'])
    ours_s = statistics.median(times['ours'])
    rows.append((name, flax_s, ours_s))

  command = 'python ' + ' '.join(
      [os.path.relpath(__file__)] + sys.argv[1:])
  print(f'Command: `{command}`  ')
  print(f'Machine: {machine.cpu_model()}, {os.cpu_count()} cores, '
        f'jax {jax.__version__} ({jax.default_backend()})  ')
  print(f'Forward+backward (grads w.r.t. params and input), float32, '
        f'batch {args.batch}, kernel 5x5, stride 2, SAME; '
        f'median of {args.reps} jitted calls.')
  print()
  print('| layer | flax.linen.ConvTranspose (s) | dcgan_jax ConvTranspose (s) '
        '| speed-up |')
  print('| --- | ---: | ---: | ---: |')
  for name, flax_s, ours_s in rows:
    print(f'| {name} | {flax_s:.3f} | {ours_s:.3f} | {flax_s / ours_s:.1f}x |')


if __name__ == '__main__':
  main()
