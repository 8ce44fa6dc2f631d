"""Go/no-go for oneDNN convolutions behind a jax.ffi custom call (issue 17): XLA vs oneDNN (with reorders) vs torch.

Run from the repository root (builds benchmarks/onednn/build/conv_bench first if it is missing; oneDNN from
`pip install onednn-devel-cpu-gomp==2023.2.0 onednn-cpu-gomp==2023.2.0`, see benchmarks/onednn/build.sh):

  python benchmarks/conv_onednn_gonogo.py [--reps 11] [--models mnist_dcgan,dcgan64] [--no-torch]
                                          [--variants any,nhwc,plain]
                                          [--onednn-binary benchmarks/onednn/build/conv_bench]

The layers are the largest by FLOPs (ties included) of the MNIST DCGAN and the 64x64 DCGAN of
benchmarks/throughput.py, read from their configs. A generator's stride-2 transposed convolution is the backward-data
pass of the strided convolution from its output shape to its input shape (and its kernel gradient that
convolution's backward-weights), so each row below is one convolution shape, standing for every D conv and G
transposed conv of that shape. For each shape and each pass (forward, backward-data, backward-weights):

- XLA: `jax.jit` of `lax.conv_general_dilated` (NHWC / HWIO / NHWC, 'SAME' pads) and of its `jax.vjp` in the
  input and in the kernel (each compiles to one convolution, checked), timed with benchmarks/harness.py
  (`time_alternating` over the three passes);
- oneDNN: the standalone benchmarks/onednn/conv_bench, primitives created with format_tag::any (oneDNN's own
  layouts) and every call timed *including* the reorders from the NHWC / HWIO tensors XLA would hand over and back
  (OMP_NUM_THREADS = the number of cores); also the "nhwc" variant (activations nhwc as given, only the weights
  reordered) and the "plain" one, primitives created directly on nhwc / hwio (no reorders; oneDNN's fallback kernels
  where it has no fast one); "best" is the fastest of the three per pass, each with the reorders it needs;
- torch (reference; torch's CPU convolutions are oneDNN's): `F.conv2d` on channels_last tensors and the two halves
  of `aten.convolution_backward` (what its autograd calls). torch pads symmetrically, so an asymmetric 'SAME'
  (MNIST: 1 low, 2 high) becomes 2 on both sides: same output shape, same FLOP count.

All three are timed in `--reps` rounds (XLA's passes, torch's, one conv_bench run of one timed call per pass and
variant), each number the median over the rounds, so that load from other jobs hits them alike. GFLOP/s use the
nominal 2 * N * OH * OW * OC * C * k * k FLOPs of every pass. The verdict: GO only if every layer's
whole-layer ratio (XLA fwd + bwd-data + bwd-weights over oneDNN's, reorders included) is at least 1.4.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import throughput  # pylint: disable=g-import-not-at-top,wrong-import-position

_DN = ('NHWC', 'HWIO', 'NHWC')
_PASSES = ('fwd', 'bwd_data', 'bwd_weights')
_VARIANTS = ('any', 'nhwc', 'plain')  # conv_bench's layout variants, every one with the reorders it needs.
_HERE = os.path.dirname(os.path.abspath(__file__))
_DEFAULT_BINARY = os.path.join(_HERE, 'onednn', 'build', 'conv_bench')
GO_RATIO = 1.4


def model_convs(config) -> dict[tuple[int, int, int, int, int, int], list[str]]:
  """(batch, H, W, C, OC, kernel) of each stride-2 conv shape of a dcgan config -> the layers it stands for.

  D: one stride-2 conv per `model.discriminator.features` entry from the image. G: per later
  `model.generator.features` entry and the output channels, a stride-2 transposed conv doubling the size, i.e. the
  backward-data pass of the conv from its output shape to its input shape.
  """
  g, d, n = config.model.generator, config.model.discriminator, config.batch_size
  shapes: dict[tuple[int, int, int, int, int, int], list[str]] = {}
  size, cin = config.data.image_size, config.data.channels
  for i, f in enumerate(d.features):
    shapes.setdefault((n, size, size, cin, f, d.kernel_size), []).append(
        f'D conv{i + 1} {size}x{size}x{cin}->{size // 2}x{size // 2}x{f}')
    size, cin = size // 2, f
  size, cin = g.start_size, g.features[0]
  for i, f in enumerate((*g.features[1:], config.data.channels)):
    shapes.setdefault((n, 2 * size, 2 * size, f, cin, g.kernel_size), []).append(
        f'G tconv{i + 1} {size}x{size}x{cin}->{2 * size}x{2 * size}x{f}')
    size, cin = 2 * size, f
  return shapes


def flops(shape) -> float:
  n, h, w, c, oc, k = shape
  return 2.0 * n * (h // 2) * (w // 2) * oc * c * k * k


def largest(shapes, tolerance: float = 0.9):
  """The shapes within `tolerance` of the largest FLOP count (ties included), largest first."""
  top = max(map(flops, shapes))
  return sorted((s for s in shapes if flops(s) >= tolerance * top), key=flops, reverse=True)


def same_pads(shape) -> tuple[int, int]:
  """(low, high) 'SAME' padding of the stride-2 conv, as lax computes it (equal in H and W)."""
  _, h, _, _, _, k = shape
  (pad,) = lax.padtype_to_pads((h,), (k,), (2,), 'SAME')
  return pad


def xla_fns(shape):
  """Jitted fwd / bwd_data / bwd_weights of the conv, their arguments, and the output shape."""
  n, h, w, c, oc, k = shape
  lo, hi = same_pads(shape)
  conv = lambda x, kernel: lax.conv_general_dilated(x, kernel, (2, 2), [(lo, hi)] * 2, dimension_numbers=_DN)
  kx, kk, kg = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (n, h, w, c), jnp.float32)
  kernel = 0.05 * jax.random.normal(kk, (k, k, c, oc), jnp.float32)
  out_shape = jax.eval_shape(conv, x, kernel).shape
  g = jax.random.normal(kg, out_shape, jnp.float32)
  fns = {
      'fwd': (jax.jit(conv), (x, kernel)),
      'bwd_data': (jax.jit(lambda x, kernel, g: jax.vjp(lambda x_: conv(x_, kernel), x)[1](g)[0]), (x, kernel, g)),
      'bwd_weights': (jax.jit(lambda x, kernel, g: jax.vjp(lambda k_: conv(x, k_), kernel)[1](g)[0]),
                      (x, kernel, g)),
  }
  for name, (fn, args) in fns.items():
    hlo = fn.lower(*args).compile().as_text()
    count = sum(' convolution(' in line for line in hlo.splitlines())
    if count != 1:
      print(f'warning: XLA {name} of {shape} compiled to {count} convolutions', file=sys.stderr)
  return fns, out_shape


def torch_fns(shape, x, kernel, g):
  """fwd / bwd_data / bwd_weights of torch on channels_last copies of the same tensors (symmetric padding)."""
  import torch  # pylint: disable=g-import-not-at-top
  _, h, _, _, _, k = shape
  lo, hi = same_pads(shape)
  pad = max(lo, hi)
  cl = torch.channels_last
  xt = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2).contiguous(memory_format=cl)
  wt = torch.from_numpy(np.array(kernel)).permute(3, 2, 0, 1).contiguous(memory_format=cl)
  gt = torch.from_numpy(np.array(g)).permute(0, 3, 1, 2).contiguous(memory_format=cl)
  conv_bwd = torch.ops.aten.convolution_backward
  common = ([2, 2], [pad, pad], [1, 1], False, [0, 0], 1)
  fwd = lambda: torch.nn.functional.conv2d(xt, wt, stride=2, padding=pad)
  with torch.no_grad():
    if tuple(fwd().shape[2:]) != tuple(g.shape[1:3]):
      raise ValueError(f'torch padding {pad} gives {tuple(fwd().shape)}, XLA {g.shape}')

  def no_grad(fn):
    def call():
      with torch.no_grad():
        return fn()
    return call

  return {
      'fwd': no_grad(fwd),
      'bwd_data': no_grad(lambda: conv_bwd(gt, xt, wt, None, *common, [True, False, False])[0]),
      'bwd_weights': no_grad(lambda: conv_bwd(gt, xt, wt, None, *common, [False, True, False])[1]),
  }


def run_onednn(binary: str, shape, reps: int, warmup: int = 3, variants: str = ','.join(_VARIANTS)) -> tuple[dict, str]:
  """{(variant, pass): {'total_ms', 'compute_ms', 'reorder_ms', 'impl'}} and the binary's INFO line."""
  n, h, w, c, oc, k = shape
  lo, hi = same_pads(shape)
  env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', str(os.cpu_count())))
  cmd = [binary, f'--n={n}', f'--h={h}', f'--w={w}', f'--c={c}', f'--oc={oc}', f'--kernel={k}', '--stride=2',
         f'--pad-lo={lo}', f'--pad-hi={hi}', f'--reps={reps}', f'--warmup={warmup}', f'--variants={variants}']
  out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
  results, info = {}, ''
  for line in out.splitlines():
    if line.startswith('INFO '):
      info = line[5:]
    elif line.startswith('RESULT '):
      fields = dict(item.split('=', 1) for item in line[7:].split(' ') if '=' in item)
      if 'unavailable' in fields:
        continue
      results[(fields['variant'], fields['pass'])] = {
          key: (fields[key] if key == 'impl' else float(fields[key]))
          for key in ('total_ms', 'compute_ms', 'reorder_ms', 'impl')}
  return results, info


def ensure_binary(path: str) -> str:
  source = os.path.join(_HERE, 'onednn', 'conv_bench.cpp')
  if path == _DEFAULT_BINARY and (not os.path.exists(path) or os.path.getmtime(path) < os.path.getmtime(source)):
    subprocess.run(['bash', os.path.join(_HERE, 'onednn', 'build.sh')], check=True)
  if not os.path.exists(path):
    raise SystemExit(f'{path} is missing: build it with bash benchmarks/onednn/build.sh')
  return path


def time_layer(shape, binary: str, reps: int, with_torch: bool, variants: str):
  """{pass: {'xla', 'torch', 'any', 'nhwc', 'plain', 'reorder', 'best' (ms), 'impl'}} of one shape; oneDNN's INFO.

  `reps` rounds; each round times every XLA pass once (alternating), then every torch pass, then runs conv_bench
  for one timed call of each pass and variant (after one untimed call), so that load from other jobs hits all three
  alike. The frameworks are not interleaved call by call: one's still-spinning worker threads (Eigen, OpenMP) would
  compete with the other's next call. Every number is the median over the rounds.
  """
  fns, out_shape = xla_fns(shape)
  xla_calls = {('xla', p): (lambda fn=fn, args=args: fn(*args)) for p, (fn, args) in fns.items()}
  torch_calls = {}
  if with_torch:
    x, kernel, g = fns['bwd_data'][1]
    torch_calls = {('torch', p): fn for p, fn in torch_fns(shape, x, kernel, g).items()}
  rounds: dict[tuple[str, str], list[float]] = {}
  info, impls = '', {}
  for r in range(reps):
    for calls in (xla_calls, torch_calls):
      if calls:
        for key, timing in harness.time_alternating(calls, 1, warmup=2 if r == 0 else 0).items():
          rounds.setdefault(key, []).append(timing.median * 1e3)
    onednn, info = run_onednn(binary, shape, 1, warmup=2 if r == 0 else 1, variants=variants)
    for (variant, p), result in onednn.items():
      rounds.setdefault((variant, p), []).append(result['total_ms'])
      if variant == 'any':
        rounds.setdefault(('reorder', p), []).append(result['reorder_ms'])
      impls[(variant, p)] = result['impl']
  expected = f'out={out_shape[1]}x{out_shape[2]}x{out_shape[3]}'
  if expected not in info:
    raise RuntimeError(f'oneDNN output shape differs from XLA {out_shape}: {info}')
  median = lambda key: statistics.median(rounds[key]) if key in rounds else float('nan')
  table = {}
  for p in _PASSES:
    ms = {v: median((v, p)) for v in _VARIANTS}
    table[p] = {
        'xla': median(('xla', p)), 'torch': median(('torch', p)), **ms, 'reorder': median(('reorder', p)),
        'best': min(m for m in ms.values() if m == m),
        'impl': ' / '.join(impls.get((v, p), '-') for v in _VARIANTS),
    }
  return table, info


def rows_for(shape, table, with_torch: bool):
  """The table rows of one conv shape (its passes and the whole layer) and its two whole-layer ratios."""
  n, h, w, c, oc, k = shape
  lo, hi = same_pads(shape)
  gflop = flops(shape) / 1e9
  label = f'{h}x{w}x{c} -> {h // 2}x{w // 2}x{oc}, k{k} s2 pad ({lo},{hi}), batch {n}'
  rate = lambda ms, g: f'{g / (ms / 1e3):.0f}' if ms == ms else '-'
  fmt = lambda ms: f'{ms:.1f}' if ms == ms else '-'
  keys = ('xla', *_VARIANTS, 'reorder', 'best', 'torch')
  whole = {key: sum(table[p][key] for p in _PASSES) for key in keys}
  rows = []
  for p, t in [*table.items(), ('whole layer', whole)]:
    g = gflop * (3 if p == 'whole layer' else 1)
    ratios = [f'{t["xla"] / t["any"]:.2f}x', f'{t["xla"] / t["best"]:.2f}x']
    if p == 'whole layer':
      ratios = [f'**{r}**' for r in ratios]
    rows.append([label if p == 'fwd' else '', p, f'{g:.2f}', fmt(t['xla']), fmt(t['any']), fmt(t['reorder']),
                 fmt(t['nhwc']), fmt(t['plain']), fmt(t['torch']), rate(t['xla'], g), rate(t['best'], g),
                 rate(t['torch'], g), *ratios])
  return rows, (whole['xla'] / whole['any'], whole['xla'] / whole['best'])


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--reps', type=int, default=11)
  parser.add_argument('--models', default='mnist_dcgan,dcgan64')
  parser.add_argument('--onednn-binary', default=_DEFAULT_BINARY)
  parser.add_argument('--no-torch', action='store_true')
  parser.add_argument('--variants', default=','.join(_VARIANTS), help='conv_bench layout variants (any is needed)')
  args = parser.parse_args(argv)
  binary = ensure_binary(args.onednn_binary)
  with_torch = not args.no_torch
  details = []
  if with_torch:
    import torch  # pylint: disable=g-import-not-at-top
    details.append(f'torch {torch.__version__} ({torch.get_num_threads()} threads)')
  load_before = harness.load_average()

  headers = ['conv (N, H, W, C -> OH, OW, OC)', 'pass', 'GFLOP', 'XLA ms', 'oneDNN any ms (with reorders)',
             'of which reorders', 'oneDNN nhwc ms (weight reorders)', 'oneDNN plain ms', 'torch ms', 'XLA GFLOP/s',
             'oneDNN best GFLOP/s', 'torch GFLOP/s', 'XLA / oneDNN any', 'XLA / oneDNN best']
  rows, ratios, notes, info = [], [], [], ''
  for model in args.models.split(','):
    config = throughput.MODELS[model][0]()
    shapes = model_convs(config)
    for shape in largest(shapes):
      table, info = time_layer(shape, binary, args.reps, with_torch, args.variants)
      layer_rows, ratio = rows_for(shape, table, with_torch)
      rows += layer_rows
      ratios.append(ratio)
      notes.append(f'- {model} {layer_rows[0][0]}: {"; ".join(shapes[shape])}. oneDNN implementations (any / nhwc / '
                   'plain): ' + ', '.join(f'{p} {table[p]["impl"]}' for p in _PASSES))

  version = re.search(r'onednn=(\S+)', info)
  runtime = {'1': 'sequential', '2': 'OpenMP', '4': 'TBB', '512': 'SYCL'}.get(
      (re.search(r'cpu_runtime=(\d+)', info) or [None, '?'])[1], 'other')
  details.append(f'oneDNN {version[1] if version else "?"} ({runtime}, '
                 f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", os.cpu_count())})')
  print(harness.header(__file__, sys.argv[1:] if argv is None else argv, *details))
  print(f'float32, ms per call, medians of {args.reps}; load average {load_before} -> {harness.load_average()}.')
  print()
  print(harness.markdown_table(headers, rows, 'll' + 'r' * (len(headers) - 2)))
  print()
  print('\n'.join(notes))
  go_any = all(r_any >= GO_RATIO for r_any, _ in ratios)
  go_best = all(r_best >= GO_RATIO for _, r_best in ratios)
  print()
  print('Whole-layer XLA / oneDNN, reorders included: any ' + ', '.join(f'{a:.2f}x' for a, _ in ratios) +
        '; best variant ' + ', '.join(f'{b:.2f}x' for _, b in ratios) + '.')
  print(f'Verdict: {"GO" if go_best else "NO-GO (blocked)"} (GO needs every whole-layer ratio >= {GO_RATIO}x; '
        f'with format_tag::any alone: {"GO" if go_any else "NO-GO"}).')

if __name__ == '__main__':
  main()
