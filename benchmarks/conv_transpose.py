"""Times forward+backward of flax ConvTranspose vs dcgan_jax.ops.ConvTranspose.

Run from the repository root:

  python benchmarks/conv_transpose.py [--batch 128] [--reps 7]

Prints a markdown table. The two implementations are timed alternately in one
run so that machine-load drift affects both equally; each timing is the median
over `--reps` jitted calls after a warm-up (compile) call.
"""

from __future__ import annotations

import argparse
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import ops  # pylint: disable=g-import-not-at-top

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
    ours = ops.ConvTranspose(**kwargs)
    # One params tree for both: the layers are parameter-compatible.
    params = stock.init(key_p, x)['params']
    y_shape = jax.eval_shape(lambda p: stock.apply({'params': p}, x), params)
    cotangent = jax.random.normal(key_c, y_shape.shape, jnp.float32)

    steps = {'flax': _train_step(stock), 'ours': _train_step(ours)}
    # One compile + warm-up call each, then alternating rounds of one call.
    times = harness.time_alternating(
        {impl: (lambda step=step: step(params, x, cotangent)) for impl, step in steps.items()}, args.reps)
    flax_s, ours_s = times['flax'].median, times['ours'].median
    rows.append([name, f'{flax_s:.3f}', f'{ours_s:.3f}', f'{flax_s / ours_s:.1f}x'])

  print(harness.header(__file__, sys.argv[1:]))
  print(f'Forward+backward (grads w.r.t. params and input), float32, '
        f'batch {args.batch}, kernel 5x5, stride 2, SAME; '
        f'median of {args.reps} jitted calls.')
  print()
  print(harness.markdown_table(
      ['layer', 'flax.linen.ConvTranspose (s)', 'dcgan_jax ConvTranspose (s)', 'speed-up'], rows, align='lrrr'))


if __name__ == '__main__':
  main()
