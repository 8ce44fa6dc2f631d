"""Per-layer times of the MNIST DCGAN (configs/mnist.py, batch 128): our ops against the equivalent PyTorch ops.

Run from the repository root:

  python benchmarks/layer_profile.py [--reps 7] [--batch 128]

Each convolution and transposed convolution is split into its three parts: forward, input gradient ("dx") and
weight gradient ("dw"). Ours are the layers the model runs (`ops.conv`, `ops.conv_transpose`), each part its
own jitted function; PyTorch's are `F.conv2d` / `F.conv_transpose2d` (NCHW, its default layout) and
`aten.convolution_backward` with one output mask at a time. "BN + LeakyReLU" is a training-mode BatchNorm
(batch statistics) followed by LeakyReLU(0.2): forward, and forward + backward (gradients for the input, scale
and offset). All timings of a row alternate between the two frameworks in one process, so load from other jobs hits
both alike; each number is the median of `--reps` calls after a warm-up call. ratio = torch time / our time
(> 1: we are faster).
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
from dcgan_jax import ops  # pylint: disable=g-import-not-at-top,wrong-import-position

# (name, transposed, input [H, W, Cin], Cout, kernel, stride, lax padding, torch (padding, output_padding))
_CONVS = [
    ('G convT 1x1x100 -> 7x7x256', True, (1, 1, 100), 256, 7, 1, 'VALID', (0, 0)),
    ('G convT 7x7x256 -> 14x14x128', True, (7, 7, 256), 128, 5, 2, 'SAME', (2, 1)),
    ('G convT 14x14x128 -> 28x28x1', True, (14, 14, 128), 1, 5, 2, 'SAME', (2, 1)),
    ('D conv 28x28x1 -> 14x14x128', False, (28, 28, 1), 128, 5, 2, 'SAME', (2, 0)),
    ('D conv 14x14x128 -> 7x7x256', False, (14, 14, 128), 256, 5, 2, 'SAME', (2, 0)),
    ('D conv 7x7x256 -> 1', False, (7, 7, 256), 1, 7, 1, 'VALID', (0, 0)),
]
# (name, [H, W, C]) of the BatchNorm + LeakyReLU blocks.
_NORMS = [
    ('G BN+LReLU 7x7x256', (7, 7, 256)),
    ('G BN+LReLU 14x14x128', (14, 14, 128)),
    ('D BN+LReLU 14x14x128', (14, 14, 128)),
    ('D BN+LReLU 7x7x256', (7, 7, 256)),
]


def _jax_conv_parts(batch, transposed, in_shape, cout, k, stride, padding):
  key_x, key_k, key_g = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(key_x, (batch, *in_shape), jnp.float32)
  kernel = 0.05 * jax.random.normal(key_k, (k, k, in_shape[-1], cout), jnp.float32)
  if transposed:
    f = lambda x, w: ops.conv_transpose(x, w, (stride, stride), padding)
  else:
    f = lambda x, w: ops.conv(x, w, (stride, stride), padding)
  g = jax.random.normal(key_g, jax.eval_shape(f, x, kernel).shape, jnp.float32)
  fwd = jax.jit(f)
  dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: f(x, w), x)[1](g))
  dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: f(x, w), w)[1](g))
  return {'fwd': lambda: fwd(x, kernel), 'dx': lambda: dx(x, kernel, g), 'dw': lambda: dw(x, kernel, g)}


def _torch_conv_parts(batch, transposed, in_shape, cout, k, stride, torch_pads):
  import torch  # pylint: disable=g-import-not-at-top
  h, w, cin = in_shape
  pad, out_pad = torch_pads
  x = torch.randn(batch, cin, h, w)
  weight = 0.05 * torch.randn(*((cin, cout) if transposed else (cout, cin)), k, k)
  if transposed:
    f = lambda: torch.nn.functional.conv_transpose2d(x, weight, None, stride, pad, out_pad)
  else:
    f = lambda: torch.nn.functional.conv2d(x, weight, None, stride, pad)
  with torch.no_grad():
    g = torch.randn_like(f())

  def backward(mask):
    return torch.ops.aten.convolution_backward(g, x, weight, None, [stride] * 2, [pad] * 2, [1, 1], transposed,
                                               [out_pad] * 2, 1, mask)

  def run(fn):
    def timed():
      with torch.no_grad():
        return fn()
    return timed

  return {'fwd': run(f), 'dx': run(lambda: backward([True, False, False])),
          'dw': run(lambda: backward([False, True, False]))}


def _jax_norm_parts(batch, shape):
  x = jax.random.normal(jax.random.key(0), (batch, *shape), jnp.float32)
  bn = nn.BatchNorm(use_running_average=False, momentum=0.99, epsilon=1e-3)
  variables = bn.init(jax.random.key(1), x)

  def f(params, x):
    y, _ = bn.apply({'params': params, 'batch_stats': variables['batch_stats']}, x, mutable=['batch_stats'])
    return nn.leaky_relu(y, 0.2)

  g = jax.random.normal(jax.random.key(2), x.shape, jnp.float32)
  fwd = jax.jit(f)
  both = jax.jit(lambda p, x, g: jax.vjp(f, p, x)[1](g))
  return {'fwd': lambda: fwd(variables['params'], x), 'fwd+bwd': lambda: both(variables['params'], x, g)}


def _torch_norm_parts(batch, shape):
  import torch  # pylint: disable=g-import-not-at-top
  h, w, c = shape
  x = torch.randn(batch, c, h, w, requires_grad=True)
  bn = torch.nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)
  act = torch.nn.LeakyReLU(0.2, inplace=True)
  g = torch.randn(batch, c, h, w)

  def fwd():
    with torch.no_grad():
      return act(bn(x))

  def both():
    return torch.autograd.grad(act(bn(x)), [x, bn.weight, bn.bias], g)

  return {'fwd': fwd, 'fwd+bwd': both}


def _medians(fns, reps: int) -> dict[tuple[str, str], float]:
  """Median seconds of each function: one warm-up call each, then `reps` alternating rounds (harness-blocked)."""
  return {name: timing.median for name, timing in harness.time_alternating(fns, reps).items()}


def _table(rows) -> str:
  """The per-part table, with a last row summing the convolutions' parts and BatchNorm's fwd+bwd."""
  lines, total = [], {'ours': 0.0, 'torch': 0.0}
  for name, parts, t in rows:
    for part in parts:
      ours, theirs = t[('ours', part)], t[('torch', part)]
      if part != 'fwd' or not name.split()[1].startswith('BN'):
        total['ours'] += ours
        total['torch'] += theirs
      lines.append([name, part, f'{ours * 1e3:.2f}', f'{theirs * 1e3:.2f}', f'{theirs / ours:.2f}x'])
  lines.append(['sum (convs: all parts; BN: fwd+bwd)', '', f'{total["ours"] * 1e3:.1f}', f'{total["torch"] * 1e3:.1f}',
                f'{total["torch"] / total["ours"]:.2f}x'])
  return harness.markdown_table(['layer', 'part', 'ours (ms)', 'torch (ms)', 'ratio'], lines, align='llrrr')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=7)
  parser.add_argument('--batch', type=int, default=128)
  args = parser.parse_args()
  import torch  # pylint: disable=g-import-not-at-top

  rows = []
  for name, transposed, in_shape, cout, k, stride, padding, torch_pads in _CONVS:
    ours = _jax_conv_parts(args.batch, transposed, in_shape, cout, k, stride, padding)
    theirs = _torch_conv_parts(args.batch, transposed, in_shape, cout, k, stride, torch_pads)
    fns = {**{('ours', p): f for p, f in ours.items()}, **{('torch', p): f for p, f in theirs.items()}}
    rows.append((name, ('fwd', 'dx', 'dw'), _medians(fns, args.reps)))
  for name, shape in _NORMS:
    ours = _jax_norm_parts(args.batch, shape)
    theirs = _torch_norm_parts(args.batch, shape)
    fns = {**{('ours', p): f for p, f in ours.items()}, **{('torch', p): f for p, f in theirs.items()}}
    rows.append((name, ('fwd', 'fwd+bwd'), _medians(fns, args.reps)))

  print(harness.header(__file__, sys.argv[1:], f'torch {torch.__version__} ({torch.get_num_threads()} threads)',
                       'shared with other jobs'))
  print(f'float32, batch {args.batch}, ms, median of {args.reps} alternating calls; ratio = torch / ours.')
  print()
  print(_table(rows))


if __name__ == '__main__':
  main()
