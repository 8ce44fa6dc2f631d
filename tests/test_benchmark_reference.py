"""The PyTorch reference of benchmarks/throughput.py matches our networks, and the benchmark's CLI loads.

The throughput comparison is only meaningful if both frameworks train the same networks, so the reference must have
exactly our parameter (and BatchNorm statistic) counts and output shapes. torch comes with requirements-test.txt.
"""

import importlib.util
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
import torch

from dcgan_jax import models
import conftest

_BENCHMARK = conftest.ROOT / 'benchmarks' / 'throughput.py'


def _load_benchmark():
  spec = importlib.util.spec_from_file_location('throughput_benchmark', _BENCHMARK)
  module = importlib.util.module_from_spec(spec)
  # Registered before executing: its dataclasses look their module up in sys.modules.
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def _our_variables(config):
  g, d = models.build(config)
  size = models.output_size(config)
  # Shapes only: nothing is compiled or computed, which keeps the test fast for the 64x64 model.
  gv = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((2, config.latent_dim)), train=False))
  dv = jax.eval_shape(
      lambda: d.init(jax.random.key(0), jnp.zeros((2, size, size, config.data.channels)), train=False))
  return gv, dv


def _torch_counts(module):
  params = sum(p.numel() for p in module.parameters())
  # running_mean and running_var correspond to our batch_stats; num_batches_tracked has no counterpart.
  stats = sum(b.numel() for name, b in module.named_buffers() if not name.endswith('num_batches_tracked'))
  return params, stats


@pytest.mark.parametrize('name', ['mnist_dcgan', 'mlp', 'dcgan64'])
def test_torch_reference_matches_our_parameter_counts_and_shapes(name):
  benchmark = _load_benchmark()
  config = benchmark.MODELS[name][0]()
  gv, dv = _our_variables(config)
  generator, discriminator = benchmark.build_torch_models(config)

  assert _torch_counts(generator) == (models.count_params(gv['params']),
                                      models.count_params(gv.get('batch_stats', {})))
  assert _torch_counts(discriminator) == (models.count_params(dv['params']),
                                          models.count_params(dv.get('batch_stats', {})))

  size, channels = models.output_size(config), config.data.channels
  with torch.no_grad():
    images = generator(torch.zeros(2, config.latent_dim))
    logits = discriminator(images)
  assert tuple(images.shape) == (2, channels, size, size)
  assert tuple(logits.shape) == (2,)


@pytest.mark.slow
def test_benchmark_help_runs():
  result = subprocess.run([sys.executable, str(_BENCHMARK), '--help'], env=conftest.subprocess_env(),
                          cwd=conftest.ROOT, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  for flag in ('--models', '--rounds', '--steps', '--no-torch'):
    assert flag in result.stdout


def test_cpu_conv_flag_names_one_row_per_library_for_convolutional_models():
  benchmark = _load_benchmark()
  args = benchmark._parse_args(['--models', 'mnist_dcgan,mlp', '--cpu_conv', 'xla, onednn'])  # pylint: disable=protected-access
  assert (args.names, args.cpu_convs) == (['mnist_dcgan', 'mlp'], ['xla', 'onednn'])
  assert benchmark._parse_args([]).cpu_convs is None  # pylint: disable=protected-access
  with pytest.raises(SystemExit):
    benchmark._parse_args(['--cpu_conv', 'xla,mkl'])  # pylint: disable=protected-access
  assert [benchmark._has_convolutions(benchmark.MODELS[n][0]()) for n in ('mnist_dcgan', 'mlp', 'dcgan64')] == [  # pylint: disable=protected-access
      True, False, True]
