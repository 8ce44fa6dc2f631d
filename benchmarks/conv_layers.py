"""Times XLA's convolution against im2col on every discriminator conv of the shipped configs (`ops.conv`'s rule).

Run from the repository root:

  python benchmarks/conv_layers.py [--reps 5] [--configs emnist_letters,mnist,folder,rock_paper_scissors,probe]

For each layer (at its config's batch size) it times, as separate jitted functions: the forward pass, the input
gradient and the kernel gradient, each for `lax.conv_general_dilated` ("xla") and for `ops.conv_im2col`
("im2col"), then the three together (forward + both gradients of a quadratic loss). The "rule" column is what
`ops.uses_im2col` picks; "best" names the faster of the two fwd+bwd times. The `probe` rows are shapes at the
rule's boundary (kernel just larger / not larger than the input or the output).

All variants of one layer are timed alternately in one process so that load from other jobs hits them alike; each
number is the median of `--reps` calls after a compile + warm-up call. im2col is skipped (`-`) when its patch matrix
would exceed `--max-patch-mb`.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
from jax import lax

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import ops  # pylint: disable=g-import-not-at-top,wrong-import-position

_DN = ('NHWC', 'HWIO', 'NHWC')

# config -> [(batch, (H, W, Cin), Cout, kernel, stride, padding)]: each config's discriminator convs.
_LAYERS = {
    'emnist_letters': [
        (128, (28, 28, 1), 64, 5, 2, 'SAME'),
        (128, (14, 14, 64), 128, 5, 2, 'SAME'),
        (128, (7, 7, 128), 256, 5, 2, 'SAME'),
        (128, (4, 4, 256), 512, 5, 1, 'SAME'),
        (128, (4, 4, 512), 1, 4, 1, 'VALID'),
    ],
    'mnist': [
        (128, (28, 28, 1), 128, 5, 2, 'SAME'),
        (128, (14, 14, 128), 256, 5, 2, 'SAME'),
        (128, (7, 7, 256), 1, 7, 1, 'VALID'),
    ],
    'folder': [
        (32, (128, 128, 3), 32, 4, 2, 'SAME'),
        (32, (64, 64, 32), 64, 4, 2, 'SAME'),
        (32, (32, 32, 64), 128, 4, 2, 'SAME'),
        (32, (16, 16, 128), 256, 4, 2, 'SAME'),
        (32, (8, 8, 256), 512, 4, 2, 'SAME'),
        (32, (4, 4, 512), 1, 4, 1, 'VALID'),
    ],
    'rock_paper_scissors': [
        (32, (300, 300, 3), 64, 3, 1, 'SAME'),
        (32, (150, 150, 64), 64, 3, 1, 'SAME'),
        (32, (75, 75, 64), 128, 3, 1, 'SAME'),
        (32, (38, 38, 128), 128, 3, 1, 'SAME'),
        (32, (19, 19, 128), 1, 19, 1, 'VALID'),
    ],
    # Around the rule's boundary, 128 -> 128 channels at batch 64.
    'probe': [
        (64, (5, 5, 128), 128, 5, 1, 'SAME'),  # kernel = input = output: XLA.
        (64, (4, 4, 128), 128, 5, 1, 'SAME'),  # kernel > input: im2col.
        (64, (2, 2, 128), 128, 3, 1, 'SAME'),  # kernel > input: im2col.
        (64, (3, 3, 128), 128, 3, 1, 'SAME'),  # kernel = input: XLA.
        (64, (7, 7, 128), 128, 4, 2, 'SAME'),  # output 4 = kernel: XLA.
        (64, (6, 6, 128), 128, 4, 2, 'SAME'),  # output 3 < kernel: im2col.
        (64, (10, 10, 128), 128, 5, 2, 'SAME'),  # output 5 = kernel: XLA.
        (64, (8, 8, 128), 128, 5, 2, 'SAME'),  # output 4 < kernel: im2col.
    ],
}


def _steps(conv_fn, stride: int, padding: str):
  """Jitted forward, input-gradient, kernel-gradient and fwd+bwd functions of one convolution."""
  strides = (stride, stride)
  f = lambda x, k: conv_fn(x, k, strides, padding)
  return {
      'fwd': (jax.jit(f), 'xk'),
      'dx': (jax.jit(lambda x, k, dy: jax.vjp(lambda x: f(x, k), x)[1](dy)), 'xkg'),
      'dw': (jax.jit(lambda x, k, dy: jax.vjp(lambda k: f(x, k), k)[1](dy)), 'xkg'),
      # A quadratic loss so the cotangent depends on the output, as in training.
      'all': (jax.jit(jax.grad(lambda x, k: jnp.sum(jnp.square(f(x, k))), argnums=(0, 1))), 'xk'),
  }


def _xla(x, k, strides, padding):
  return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=_DN)


def time_layer(batch, in_shape, cout, k, stride, padding, reps, max_patch_mb):
  """Median seconds per part: {impl: {part: seconds}}; im2col is absent when its patch matrix is too large."""
  key_x, key_k = jax.random.split(jax.random.key(0))
  x = jax.random.normal(key_x, (batch, *in_shape), jnp.float32)
  kernel = 0.05 * jax.random.normal(key_k, (k, k, in_shape[-1], cout), jnp.float32)
  y = jax.eval_shape(lambda: _xla(x, kernel, (stride, stride), padding))
  dy = jax.random.normal(jax.random.key(1), y.shape, jnp.float32)
  arg_sets = {'xk': (x, kernel), 'xkg': (x, kernel, dy)}
  patch_mb = y.size // cout * k * k * in_shape[-1] * 4 / 2**20
  impls = {'xla': _steps(_xla, stride, padding)}
  if patch_mb <= max_patch_mb:
    impls['im2col'] = _steps(ops.conv_im2col, stride, padding)
  fns = {(impl, part): (lambda fn=fn, args=arg_sets[arg_kind]: fn(*args))
         for impl, steps in impls.items() for part, (fn, arg_kind) in steps.items()}
  times = harness.time_alternating(fns, reps)  # One compile + warm-up call each, then alternating rounds.
  return {impl: {part: times[(impl, part)].median for part in steps} for impl, steps in impls.items()}


def _row(batch, in_shape, cout, k, stride, padding, args) -> list[str]:
  """The table cells after `config` for one layer."""
  t = time_layer(batch, in_shape, cout, k, stride, padding, args.reps, args.max_patch_mb)
  h, w, cin = in_shape
  rule = 'im2col' if ops.uses_im2col((h, w), (k, k), (stride, stride), padding) else 'xla'
  name = f'{h}x{w}x{cin} -> {cout}, {k}x{k} s{stride} {padding}'
  ms = lambda parts: ' / '.join(f'{parts[p] * 1e3:.1f}' for p in ('fwd', 'dx', 'dw'))
  xla = t['xla']
  cells = [str(batch), name, rule, ms(xla), f'{xla["all"] * 1e3:.1f}']
  if 'im2col' not in t:
    return cells + ['-', '-', '-', 'xla']
  im = t['im2col']
  best = 'im2col' if im['all'] < xla['all'] else 'xla'
  return cells + [ms(im), f'{im["all"] * 1e3:.1f}', f'{xla["all"] / im["all"]:.2f}x', best]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=5)
  parser.add_argument('--configs', default=','.join(_LAYERS))
  parser.add_argument('--max-patch-mb', type=float, default=512.0)
  args = parser.parse_args()

  print(harness.header(__file__, sys.argv[1:], 'shared with other jobs'))
  print(f'float32, ms, median of {args.reps} alternating calls. xla = lax.conv_general_dilated (flax.linen.Conv); '
        'im2col = ops.conv_im2col; all = fwd + both gradients; speedup = xla all / im2col all.')
  print()
  headers = ['config', 'batch', 'layer', 'rule', 'xla fwd / dx / dw', 'xla all', 'im2col fwd / dx / dw', 'im2col all',
             'speedup', 'best']
  # The table is printed row by row as the layers finish: a long run shows its progress.
  print(harness.markdown_table(headers, [], align='lrllrrrrrl'), flush=True)
  for config in args.configs.split(','):
    for layer in _LAYERS[config]:
      print(harness.markdown_row([config, *_row(*layer, args)]), flush=True)


if __name__ == '__main__':
  main()
