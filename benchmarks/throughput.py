"""Training throughput (images/s) of our GAN train step against a PyTorch reference of the same networks.

Run from the repository root:

  python benchmarks/throughput.py [--models mnist_dcgan,mlp,dcgan64] [--rounds 5] [--steps N] [--no-torch]
      [--cpu_conv xla,onednn]

For each model, ours is the function the training loop runs (`parallel.make_parallel_train_step` over a mesh of all
local devices, the uint8 dataset resident on the device as the loop keeps MNIST-sized data, state donated), and the
reference is a PyTorch model with the same layers, parameter counts, batch size, optimizers (two Adams, lr 2e-4,
betas (0.5, 0.999)) and update order as the PyTorch DCGAN example: D on a real batch and on a fresh, detached fake
batch, then G through the updated D with the same fake batch. PyTorch keeps its default thread settings.

The machine is shared, so absolute times drift; the two frameworks are therefore timed alternately in one process
(`--rounds` rounds of `--steps` steps each) and the table reports the median images/s over rounds, so that drift
hits both sides alike. FLOPs per step come from XLA's cost analysis of our compiled step; the same count is used to
express PyTorch's speed in GFLOP/s, against the measured float32 matmul peak of this machine. A model whose warm-up
step is very slow gets fewer steps and rounds (noted under the table), so that a regression cannot stretch the run
to hours.

`--cpu_conv` takes one or more values of `config.cpu_conv` (comma-separated): each model with convolutions then
gets one row per value ("model, cpu_conv=onednn"), all of them and torch alternating in the same rounds, so that
XLA's and oneDNN's convolutions are compared under the same load (the MLP has no convolutions: one row).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import statistics
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

# Runnable as a plain script from the repository root without installing.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import harness  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.configs import fashion_mnist_mlp  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.configs import mnist  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import models  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax.ops import onednn  # pylint: disable=g-import-not-at-top,wrong-import-position
from dcgan_jax import parallel
from dcgan_jax import train_state

# Fused steps per call for the extra MLP row (unless its config sets more), if the trainer has `steps_per_call`.
_FUSED_STEPS = 10
_DATASET_IMAGES = 60_000
_DATASET_MAX_BYTES = 256 << 20
_INDEX_SETS = 4
# Timing budget per model and framework; a full default run stays near 10 minutes even on a slow step.
_MAX_SECONDS_PER_FRAMEWORK = 150.0
_MATMUL_SIZE = 2048
_MATMUL_REPS = 7
_TORCH_WARMUP_STEPS = 2


def mnist_dcgan_config() -> ml_collections.ConfigDict:
  return mnist.get_config()


def mlp_config() -> ml_collections.ConfigDict:
  return fashion_mnist_mlp.get_config()


def dcgan64_config() -> ml_collections.ConfigDict:
  """The 64x64 RGB DCGAN of Radford et al. (4x4 kernels, ReLU generator, no BatchNorm on D's first layer)."""
  config = default.get_config()
  config.batch_size = 64
  g, d = config.model.generator, config.model.discriminator
  g.start_size = 4
  g.features = (512, 256, 128, 64)
  g.kernel_size = 4
  g.activation = 'relu'
  d.features = (64, 128, 256, 512)
  d.kernel_size = 4
  d.first_batchnorm = False
  config.data.image_size = 64
  config.data.channels = 3
  return config


# name -> (config factory, default steps per round). The MLP step takes milliseconds, so it needs more steps per
# round than the DCGANs (a second or more each) for a timing well above the timer and dispatch noise.
MODELS: dict[str, tuple[Callable[[], ml_collections.ConfigDict], int]] = {
    'mnist_dcgan': (mnist_dcgan_config, 10),
    'mlp': (mlp_config, 100),
    'dcgan64': (dcgan64_config, 10),
}


# ---------------------------------------------------------------------------------------------------------------
# PyTorch reference. Built from the same config fields as ours so that the architecture cannot drift; torch is
# imported lazily because CI (and `--no-torch`) runs without it.


def _same_transpose_padding(kernel: int) -> tuple[int, int]:
  """`(padding, output_padding)` of a stride-2 ConvTranspose2d that doubles the size, as 'SAME' does in lax.

  The output size is (H - 1) * 2 - 2p + k + op; it equals 2H when 2p - op = k - 2, with op in {0, 1}.
  """
  padding = math.ceil((kernel - 2) / 2)
  return padding, 2 * padding - (kernel - 2)


def _same_conv_padding(kernel: int) -> int:
  """Symmetric padding of a stride-2 Conv2d that halves an even size, as 'SAME' does in lax."""
  return (kernel - 1) // 2


def build_torch_models(config: ml_collections.ConfigDict):
  """Returns `(generator, discriminator)` torch modules equal in layers and parameter counts to ours.

  The generator maps z `[B, latent_dim]` to images `[B, C, S, S]`; the discriminator maps images to logits `[B]`.
  BatchNorm uses our momentum and epsilon (torch's momentum is one minus flax's) so the work per step is the same.
  """
  from torch import nn  # pylint: disable=g-import-not-at-top

  g, d = config.model.generator, config.model.discriminator
  size, channels = models.output_size(config), config.data.channels

  def act(name, slope):
    # In place, as the PyTorch DCGAN example does: it saves a pass over the activations.
    return nn.LeakyReLU(slope, inplace=True) if name == 'leaky_relu' else nn.ReLU(inplace=True)

  def bn2d(width, net):
    return nn.BatchNorm2d(width, eps=net.bn_epsilon, momentum=1.0 - net.bn_momentum)

  out_act = nn.Tanh() if g.output_activation == 'tanh' else nn.Sigmoid()

  if (g.family, d.family) == ('dcgan', 'conv'):
    k = g.kernel_size
    pad, out_pad = _same_transpose_padding(k)
    widths = list(g.features)
    g_layers = [nn.Unflatten(1, (config.latent_dim, 1, 1)),
                nn.ConvTranspose2d(config.latent_dim, widths[0], g.start_size, 1, 0, bias=False),
                bn2d(widths[0], g), act(g.activation, g.leaky_slope)]
    for prev, width in zip(widths, widths[1:]):
      g_layers += [nn.ConvTranspose2d(prev, width, k, 2, pad, out_pad, bias=False), bn2d(width, g),
                   act(g.activation, g.leaky_slope)]
    g_layers += [nn.ConvTranspose2d(widths[-1], channels, k, 2, pad, out_pad, bias=True), out_act]

    kd = d.kernel_size
    d_layers, prev, side = [], channels, size
    for i, width in enumerate(d.features):
      use_bn = i > 0 or d.first_batchnorm
      d_layers.append(nn.Conv2d(prev, width, kd, 2, _same_conv_padding(kd), bias=not use_bn))
      if use_bn:
        d_layers.append(bn2d(width, d))
      d_layers.append(act('leaky_relu', d.leaky_slope))
      prev, side = width, math.ceil(side / 2)
    d_layers += [nn.Conv2d(prev, 1, side, 1, 0, bias=True), nn.Flatten(0)]
    return nn.Sequential(*g_layers), nn.Sequential(*d_layers)

  if (g.family, d.family) == ('mlp', 'mlp'):
    g_layers, prev = [], config.latent_dim
    for width in g.features:
      # Dense, activation, then BatchNorm: the order of our MLP generator.
      g_layers += [nn.Linear(prev, width), act(g.activation, g.leaky_slope)]
      if g.batchnorm:
        g_layers.append(nn.BatchNorm1d(width, eps=g.bn_epsilon, momentum=1.0 - g.bn_momentum))
      prev = width
    g_layers += [nn.Linear(prev, size * size * channels), out_act, nn.Unflatten(1, (channels, size, size))]
    d_layers, prev = [nn.Flatten()], size * size * channels
    for width in d.features:
      d_layers += [nn.Linear(prev, width), act(d.activation, d.leaky_slope)]
      prev = width
    d_layers += [nn.Linear(prev, 1), nn.Flatten(0)]
    return nn.Sequential(*g_layers), nn.Sequential(*d_layers)

  raise ValueError(f'no PyTorch reference for the {g.family} generator with the {d.family} discriminator')


class TorchRunner:
  """The PyTorch reference training loop, on a float32 real batch prepared once."""

  def __init__(self, config: ml_collections.ConfigDict):
    import torch  # pylint: disable=g-import-not-at-top

    self._torch = torch
    torch.manual_seed(config.seed)
    self.generator, self.discriminator = build_torch_models(config)
    self.generator.train()
    self.discriminator.train()
    self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=config.g_optimizer.learning_rate,
                                  betas=(config.g_optimizer.b1, config.g_optimizer.b2))
    self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=config.d_optimizer.learning_rate,
                                  betas=(config.d_optimizer.b1, config.d_optimizer.b2))
    self.loss = torch.nn.BCEWithLogitsLoss()
    batch, size, channels = config.batch_size, models.output_size(config), config.data.channels
    lo, hi = models.data_range(config)
    self.real = torch.rand(batch, channels, size, size) * (hi - lo) + lo
    self.ones, self.zeros = torch.ones(batch), torch.zeros(batch)
    self.batch, self.latent_dim, self.noise = batch, config.latent_dim, config.noise

  def _sample_noise(self):
    torch = self._torch
    if self.noise == 'uniform':
      return torch.rand(self.batch, self.latent_dim) * 2.0 - 1.0
    return torch.randn(self.batch, self.latent_dim)

  def step(self) -> None:
    """One D update (real, then detached fake), then one G update through the updated D on the same fake batch."""
    g, d = self.generator, self.discriminator
    d.zero_grad()
    self.loss(d(self.real), self.ones).backward()
    fake = g(self._sample_noise())
    self.loss(d(fake.detach()), self.zeros).backward()
    self.d_opt.step()
    g.zero_grad()
    # As in the PyTorch example, D's parameters still require grad here, so this backward also computes D weight
    # gradients that the next d.zero_grad() discards; ours differentiates with respect to the fake batch only.
    self.loss(d(fake), self.ones).backward()
    self.g_opt.step()

  def run(self, steps: int) -> None:
    """`steps` training steps (synchronous on the CPU; `harness.block` waits for a GPU)."""
    for _ in range(steps):
      self.step()


# ---------------------------------------------------------------------------------------------------------------
# Ours.


def _fused_step_supported() -> bool:
  """Whether the trainer can fuse several steps into one call (`config.steps_per_call`)."""
  return 'steps_per_call' in default.get_config()


@dataclasses.dataclass
class CompileInfo:
  first_call_s: float  # Trace + compile + one call, the way the training loop pays for it.
  aot_s: float  # `.lower(...).compile()` alone, measured cold before the first call.
  flops_per_call: Optional[float]


class OursRunner:
  """Our training loop's step function, with the dataset resident on the device.

  This is the loop's path for datasets that fit `config.data.max_device_bytes` (MNIST-sized ones): the uint8
  images live on the device, and each call receives only the batch indices (`int32 [K, B]`, put on the device per
  call as the loop does), gathers its batches there and runs K = `steps_per_call` steps in a `lax.scan`.
  """

  def __init__(self, config: ml_collections.ConfigDict, steps_per_call: int = 1):
    # The convolution library is chosen when the step is traced: set it for this runner's every call (a call after
    # `jax.clear_caches()` traces again).
    self.cpu_conv = config.cpu_conv
    onednn.configure(self.cpu_conv)
    devices = jax.devices()
    if config.batch_size % len(devices):
      raise ValueError(f'batch {config.batch_size} does not split over {len(devices)} devices')
    mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
    P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
    replicated = jax.sharding.NamedSharding(mesh, P())
    self._index_sharding = jax.sharding.NamedSharding(mesh, P(None, 'data'))
    self.steps_per_call = steps_per_call
    self.state = jax.device_put(train_state.create_train_state(config, jax.random.key(config.seed)), replicated)

    size, channels = models.output_size(config), config.data.channels
    image_bytes = size * size * channels
    # A synthetic dataset as large as MNIST's training split (capped in bytes for larger images): the gather then
    # reads from an array of realistic size, and random pixels cost the same as real ones.
    num_images = max(config.batch_size, min(_DATASET_IMAGES, _DATASET_MAX_BYTES // image_bytes))
    pixels = np.random.default_rng(0).integers(0, 256, (num_images, size, size, channels), dtype=np.uint8)
    self.data = jax.device_put(pixels, replicated)
    rng = np.random.default_rng(1)
    # A few distinct index sets, reused in turn: building them is host work the loop does off the timed path too.
    self._indices = [rng.integers(0, num_images, (steps_per_call, config.batch_size), dtype=np.int32)
                     for _ in range(_INDEX_SETS)]
    self._calls = 0
    self.step_fn = parallel.make_parallel_train_step(
        mesh, config.model.sync_batchnorm, models.data_range(config), True)
    self.metrics = None

  def _next_indices(self) -> jax.Array:
    indices = self._indices[self._calls % len(self._indices)]
    self._calls += 1
    return jax.device_put(indices, self._index_sharding)

  def compile(self) -> CompileInfo:
    """Measures AOT compilation (and reads the FLOP count), then the cold first call the training loop sees."""
    onednn.configure(self.cpu_conv)
    aot_s, compiled = harness.compile_seconds(self.step_fn, self.state, self.data, self._next_indices())
    flops = _flops(compiled)
    # The jitted function could otherwise reuse what the AOT path just built; the first call should be cold.
    jax.clear_caches()
    first_call_s, (self.state, self.metrics) = harness.time_once(self.step_fn, self.state, self.data,
                                                                 self._next_indices())
    return CompileInfo(first_call_s, aot_s, flops)

  def run(self, steps: int) -> tuple[Any, Any]:
    """`steps` training steps (whole calls), unblocked: the caller (the harness) waits at the end, as the loop does."""
    calls = -(-steps // self.steps_per_call)
    onednn.configure(self.cpu_conv)
    for _ in range(calls):
      self.state, self.metrics = self.step_fn(self.state, self.data, self._next_indices())
    return self.state, self.metrics


def _flops(compiled) -> Optional[float]:
  """Total FLOPs from `cost_analysis()`, which is a dict, or a list of per-program dicts in some versions."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  (some backends do not implement it)
    return None
  if isinstance(analysis, dict):
    analysis = [analysis]
  total = sum(float(a.get('flops', 0.0)) for a in analysis or [] if a)
  return total or None


# ---------------------------------------------------------------------------------------------------------------
# Machine.


def jax_matmul_gflops(n: int = _MATMUL_SIZE, reps: int = _MATMUL_REPS) -> float:
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  timing = harness.time_calls(jax.jit(jnp.matmul), a, b, warmup=1, repeats=reps)
  return 2 * n**3 / timing.median / 1e9


def torch_matmul_gflops(n: int = _MATMUL_SIZE, reps: int = _MATMUL_REPS) -> float:
  import torch  # pylint: disable=g-import-not-at-top
  timing = harness.time_calls(torch.mm, torch.randn(n, n), torch.randn(n, n), warmup=1, repeats=reps)
  return 2 * n**3 / timing.median / 1e9


def _usable_cores() -> int:
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def _torch_available() -> bool:
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


# ---------------------------------------------------------------------------------------------------------------
# Benchmark.


@dataclasses.dataclass
class Row:
  model: str
  batch: int
  ours_ips: list[float]  # Images/s of each round.
  torch_ips: Optional[list[float]]
  compile_info: CompileInfo
  flops_per_step: Optional[float]
  note: Optional[str] = None  # Printed under the table, e.g. when the step budget cut the steps per round.


def _alternate(runners: dict[str, Any], steps: int, rounds: int, batch: int) -> dict[str, list[float]]:
  """Images/s of each runner in each of `rounds`, the runners taking turns within each round."""
  timings = harness.time_alternating({name: functools.partial(runner.run, steps) for name, runner in runners.items()},
                                     rounds, warmup=0)
  return {name: timing.rates(steps * batch) for name, timing in timings.items()}


def _has_convolutions(config: ml_collections.ConfigDict) -> bool:
  return 'mlp' not in (config.model.generator.family, config.model.discriminator.family)


def _ours_runners(config: ml_collections.ConfigDict, name: str, cpu_convs: list[str],
                  log) -> tuple[dict[str, OursRunner], dict[str, CompileInfo], float]:
  """One compiled runner per `config.cpu_conv` value (one only for a model without convolutions), keyed by row
  label; their compile infos; the slowest warm-up step in seconds."""
  runners, infos = {}, {}
  for cpu_conv in cpu_convs if _has_convolutions(config) else cpu_convs[:1]:
    label = name if len(cpu_convs) == 1 or not _has_convolutions(config) else f'{name}, cpu_conv={cpu_conv}'
    log(f'{label}: building and compiling ours')
    variant = config.copy_and_resolve_references()
    variant.cpu_conv = cpu_conv
    # One step per call: the unit torch is timed in, and the loop's default.
    runners[label] = OursRunner(variant, steps_per_call=1)
    infos[label] = runners[label].compile()
  # A second call of each (after every compile: `compile` clears JAX's caches): any lazy allocation or retrace
  # after compilation stays out of the timings.
  step_s = max(harness.time_once(runner.run, 1)[0] for runner in runners.values())
  return runners, infos, step_s


def benchmark_model(name: str, steps: int, rounds: int, use_torch: bool, log,
                    cpu_convs: Optional[list[str]] = None) -> list[Row]:
  """The rows of model `name`: one per `cpu_convs` value (default: the config's) for a model with convolutions,
  and for the MLP a row with fused steps if the trainer supports them."""
  config = MODELS[name][0]()
  batch = config.batch_size
  ours_runners, infos, step_s = _ours_runners(config, name, cpu_convs or [config.cpu_conv], log)
  runners: dict[str, Any] = dict(ours_runners)
  if use_torch:
    log(f'{name}: building torch reference')
    ref = TorchRunner(config)
    ref.run(_TORCH_WARMUP_STEPS)
    step_s = max(step_s, harness.time_once(ref.run, 1)[0])
  # A step that is far slower than expected (a regression, or a badly overloaded machine) would stretch the run
  # to hours; fewer steps (and if need be rounds) keep it bounded, and the table still shows the slowdown.
  note = None
  if rounds * steps * step_s > _MAX_SECONDS_PER_FRAMEWORK:
    new_steps = max(1, int(_MAX_SECONDS_PER_FRAMEWORK / (rounds * step_s)))
    new_rounds = min(rounds, max(1, int(_MAX_SECONDS_PER_FRAMEWORK / (new_steps * step_s))))
    note = (f'{name}: a warm-up step took {step_s:.1f} s, so this row ran {new_rounds} round(s) of {new_steps} '
            f'step(s) instead of {rounds} of {steps}, to stay near {_MAX_SECONDS_PER_FRAMEWORK:.0f} s per framework')
    log(note)
    steps, rounds = new_steps, new_rounds
  if use_torch:
    runners['torch'] = ref
  log(f'{name}: timing {rounds} rounds x {steps} steps')
  ips = _alternate(runners, steps, rounds, batch)
  # XLA's cost analysis does not count the FFI calls' FLOPs; every row runs the same step, so all take the largest.
  flops = max((i.flops_per_call for i in infos.values() if i.flops_per_call), default=None)
  rows = [Row(label, batch, ips[label], ips.get('torch'), infos[label], flops, note) for label in ours_runners]

  if name == 'mlp':
    if _fused_step_supported():
      k = config.steps_per_call if config.steps_per_call > 1 else _FUSED_STEPS
      log(f'{name}: fused, steps_per_call={k}')
      fused = OursRunner(config, steps_per_call=k)
      fused_info = fused.compile()
      harness.block(fused.run(k))
      fused_runners = {'ours': fused}
      if use_torch:
        fused_runners['torch'] = runners['torch']
      fused_ips = _alternate(fused_runners, max(k, steps // k * k), rounds, batch)
      # The step is the same; XLA's cost analysis counts a while-loop body once, not K times, so the FLOPs of the
      # unfused call are the right count per step.
      rows.append(Row(f'mlp, steps_per_call={k}', batch, fused_ips['ours'], fused_ips.get('torch'), fused_info,
                      flops))
    else:
      log('mlp: configs/default.py has no steps_per_call; the fused-steps row is skipped')
  return rows


def _fmt(value: Optional[float], spec: str, missing: str = 'n/a') -> str:
  return missing if value is None else format(value, spec)


def format_table(rows: list[Row], jax_peak: float) -> str:
  lines = []
  for r in rows:
    ours_ips = statistics.median(r.ours_ips)
    torch_ips = statistics.median(r.torch_ips) if r.torch_ips else None
    ratio = ours_ips / torch_ips if torch_ips else None
    gflop = r.flops_per_step / 1e9 if r.flops_per_step else None
    ours_gflops = gflop * ours_ips / r.batch if gflop else None
    torch_gflops = gflop * torch_ips / r.batch if gflop and torch_ips else None
    ours_cell = (f'{ours_gflops:.1f} ({100 * ours_gflops / jax_peak:.0f}%)' if ours_gflops else 'n/a')
    compile_cell = f'{r.compile_info.first_call_s:.1f} (AOT {r.compile_info.aot_s:.1f})'
    ratio_cell = f'{ratio:.2f}x' if ratio else 'n/a'
    lines.append([r.model, r.batch, f'{ours_ips:.0f}', _fmt(torch_ips, '.0f'), ratio_cell, compile_cell,
                  _fmt(gflop, '.2f'), ours_cell, _fmt(torch_gflops, '.1f')])
  return harness.markdown_table(['model', 'batch', 'ours img/s', 'torch img/s', 'ours/torch', 'compile s',
                                 'GFLOP/step', 'ours GFLOP/s (% of peak)', 'torch GFLOP/s'], lines, align='lrrrrrrrr')


def format_rounds(rows: list[Row]) -> str:
  """Images/s of every round, so that a reader can see how much the shared machine moved the medians."""
  lines = []
  for r in rows:
    line = f'- {r.model}: ours ' + ', '.join(f'{v:.0f}' for v in r.ours_ips)
    if r.torch_ips:
      line += '; torch ' + ', '.join(f'{v:.0f}' for v in r.torch_ips)
    lines.append(line)
  return '\n'.join(lines)


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
  """The command line, checked; `names` holds the models to run."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default=','.join(MODELS),
                      help=f'comma-separated subset of {",".join(MODELS)} (default: all)')
  parser.add_argument('--rounds', type=int, default=5, help='alternating timing rounds; the median is reported')
  parser.add_argument('--steps', type=int, default=None,
                      help='train steps per round and framework (default: ' +
                      ', '.join(f'{k} {v[1]}' for k, v in MODELS.items()) + ')')
  parser.add_argument('--no-torch', action='store_true', help='time ours only')
  parser.add_argument('--cpu_conv', default=None,
                      help='comma-separated config.cpu_conv values (auto, xla, onednn): one row each for the models '
                      "with convolutions, timed in the same rounds (default: each config's own)")
  args = parser.parse_args(argv)
  args.names = [n.strip() for n in args.models.split(',') if n.strip()]
  unknown = [n for n in args.names if n not in MODELS]
  if unknown:
    parser.error(f'unknown model(s) {unknown}; choose from {list(MODELS)}')
  if args.rounds < 1 or (args.steps is not None and args.steps < 1):
    parser.error('--rounds and --steps must be >= 1')
  args.cpu_convs = [c.strip() for c in (args.cpu_conv or '').split(',') if c.strip()] or None
  bad = [c for c in args.cpu_convs or [] if c not in ('auto', 'xla', 'onednn')]
  if bad:
    parser.error(f'--cpu_conv: unknown value(s) {bad}; choose from auto, xla, onednn')
  return args


def main(argv: Optional[list[str]] = None) -> None:
  args = _parse_args(argv)
  names = args.names
  use_torch = not args.no_torch and _torch_available()

  # Progress goes to stderr so that stdout is the report alone.
  log = lambda msg: print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)
  load_start = harness.load_average()
  log('measuring matmul peaks')
  jax_peaks = [jax_matmul_gflops()]
  torch_peaks = [torch_matmul_gflops()] if use_torch else []

  rows = []
  for name in names:
    rows += benchmark_model(name, args.steps or MODELS[name][1], args.rounds, use_torch, log, args.cpu_convs)

  # Measured again at the end: other processes can depress either measurement, and the higher one is closer to
  # what the machine can do.
  log('measuring matmul peaks again')
  jax_peaks.append(jax_matmul_gflops())
  if use_torch:
    torch_peaks.append(torch_matmul_gflops())
  jax_peak = max(jax_peaks)

  import jaxlib  # pylint: disable=g-import-not-at-top
  details = [f'{_usable_cores()} of them usable', f'jaxlib {jaxlib.__version__}']
  if use_torch:
    import torch  # pylint: disable=g-import-not-at-top
    details.append(f'torch {torch.__version__} ({torch.get_num_threads()} threads)')
  else:
    details.append('torch not used' + ('' if args.no_torch else ' (not importable)'))
  print(harness.header(__file__, sys.argv[1:], *details))
  print(f'XLA_FLAGS: `{os.environ["XLA_FLAGS"]}`  ' if os.environ.get('XLA_FLAGS') else 'XLA_FLAGS: not set  ')
  fmt_peaks = lambda peaks: ' / '.join(f'{p:.1f}' for p in peaks)
  peak_line = (f'float32 matmul peak ({_MATMUL_SIZE}x{_MATMUL_SIZE}, median of {_MATMUL_REPS}; at start / end): '
               f'JAX {fmt_peaks(jax_peaks)} GFLOP/s (the higher is "peak" below)')
  if torch_peaks:
    peak_line += f', torch {fmt_peaks(torch_peaks)} GFLOP/s'
  print(peak_line + '  ')
  print(f'1-minute load average at start {load_start}, at end {harness.load_average()} (other processes share the cores)  ')
  steps_desc = str(args.steps) if args.steps else ', '.join(f'{n} {MODELS[n][1]}' for n in names)
  print(f'Median images/s over {args.rounds} alternating rounds (steps per round: {steps_desc}). '
        "Ours: the training loop's step function (`make_parallel_train_step`, dataset on device, one step per call "
        'unless the row says otherwise). compile s = its first call (trace + compile + one call), AOT = '
        "`.lower().compile()` alone. GFLOP/step from XLA's cost analysis of our step; torch GFLOP/s applies the "
        "same count to torch's time.")
  print()
  print(format_table(rows, jax_peak))
  print()
  print('Images/s per round:')
  print(format_rounds(rows))
  notes = [r.note for r in rows if r.note]
  if notes:
    print()
    print('Notes:')
    print('\n'.join(f'- {n}' for n in notes))


if __name__ == '__main__':
  main()
