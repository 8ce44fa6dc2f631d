"""Spectral normalization (`model.discriminator.spectral_norm`, `model.generator.spectral_norm`): every kernel is
divided by its largest singular value, estimated by power iteration whose state rides in `batch_stats`."""

import jax
import jax.numpy as jnp
import numpy as np

import conftest
from dcgan_jax import models
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.models import dcgan
from dcgan_jax.models import mlp


def _top_singular_value(kernel) -> float:
  kernel = np.asarray(kernel, np.float64)
  return float(np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0])


def _iterate(module, variables, x, calls):
  """`calls` forwards in training mode, each moving the power iteration on; returns the new batch_stats."""
  def body(_, batch_stats):
    _, updates = module.apply({'params': variables['params'], 'batch_stats': batch_stats}, x, train=True,
                              mutable=['batch_stats'])
    return updates['batch_stats']
  return jax.jit(lambda bs: jax.lax.fori_loop(0, calls, body, bs))(variables['batch_stats'])


def test_conv_discriminator_divides_each_kernel_by_its_largest_singular_value():
  module = dcgan.DCGANDiscriminator(features=(8, 16), kernel_size=3, batchnorm=False, spectral_norm=True)
  plain = module.clone(spectral_norm=False)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  variables = module.init(jax.random.key(1), x, train=False)
  # The same parameters as without it; u [1, out] and sigma [] per kernel in batch_stats.
  assert jax.tree.structure(variables['params']) == jax.tree.structure(
      plain.init(jax.random.key(1), x, train=False)['params'])
  shapes = jax.tree.map(jnp.shape, variables['batch_stats'])
  assert shapes == {'SpectralNorm_0': {'Conv_0/kernel/u': (1, 8), 'Conv_0/kernel/sigma': ()},
                    'SpectralNorm_1': {'Conv_1/kernel/u': (1, 16), 'Conv_1/kernel/sigma': ()},
                    'SpectralNorm_2': {'Conv_2/kernel/u': (1, 1), 'Conv_2/kernel/sigma': ()}}
  batch_stats = _iterate(module, variables, x, calls=60)
  params = variables['params']
  for i in range(3):
    sigma = float(batch_stats[f'SpectralNorm_{i}'][f'Conv_{i}/kernel/sigma'])
    np.testing.assert_allclose(sigma, _top_singular_value(params[f'Conv_{i}']['kernel']), rtol=1e-4)
  # Inference: the logits of the plain network whose kernels have largest singular value 1.
  normalized = {name: {**layer, 'kernel': layer['kernel'] / _top_singular_value(layer['kernel'])}
                for name, layer in params.items()}
  np.testing.assert_allclose(
      module.apply({'params': params, 'batch_stats': batch_stats}, x, train=False),
      plain.apply({'params': normalized}, x, train=False), rtol=1e-4, atol=1e-6)
  for layer in normalized.values():
    np.testing.assert_allclose(_top_singular_value(layer['kernel']), 1.0, rtol=1e-6)


def test_inference_leaves_the_power_iteration_state_alone():
  module = mlp.MLPDiscriminator(features=(32,), spectral_norm=True)
  x = jax.random.normal(jax.random.key(0), (4, 4, 4, 1))
  variables = module.init(jax.random.key(1), x, train=False)
  _, updates = module.apply(variables, x, train=False, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, updates['batch_stats'], variables['batch_stats'])
  moved = _iterate(module, variables, x, calls=1)['SpectralNorm_0']['Dense_0/kernel/u']
  assert not np.allclose(moved, variables['batch_stats']['SpectralNorm_0']['Dense_0/kernel/u'])


def test_mlp_discriminator_and_dcgan_generator_normalize_every_kernel():
  d = mlp.MLPDiscriminator(features=(32, 16), spectral_norm=True)
  x = jax.random.normal(jax.random.key(0), (4, 4, 4, 1))
  d_vars = d.init(jax.random.key(1), x, train=False)
  d_stats = _iterate(d, d_vars, x, calls=60)
  for i in range(3):
    np.testing.assert_allclose(d_stats[f'SpectralNorm_{i}'][f'Dense_{i}/kernel/sigma'],
                               _top_singular_value(d_vars['params'][f'Dense_{i}']['kernel']), rtol=1e-4)
  g = dcgan.DCGANGenerator(start_size=2, features=(8, 4), kernel_size=3, channels=1, spectral_norm=True)
  z = jax.random.normal(jax.random.key(2), (4, 6))
  g_vars = g.init(jax.random.key(3), z, train=False)
  g_stats = _iterate(g, g_vars, z, calls=60)
  for i in range(3):
    np.testing.assert_allclose(g_stats[f'SpectralNorm_{i}'][f'ConvTranspose_{i}/kernel/sigma'],
                               _top_singular_value(g_vars['params'][f'ConvTranspose_{i}']['kernel']), rtol=1e-4)


def test_the_config_field_keeps_the_mnist_parameter_counts_and_the_step_moves_sigma():
  config = conftest.tiny_config()
  plain = train_state.create_train_state(config, jax.random.key(0))
  config.model.discriminator.spectral_norm = True
  state = train_state.create_train_state(config, jax.random.key(0))
  count = lambda tree: sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))
  assert count(state.d_params) == count(plain.d_params) and count(state.g_params) == count(plain.g_params)
  sigma = lambda s: float(s.d_batch_stats['SpectralNorm_1']['Conv_1/kernel/sigma'])
  assert sigma(state) == 1.0  # Its initial value, before any training-mode forward.
  images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)
  new, metrics = jax.jit(train.train_step)(state, {'image': images})
  # One D update (two forwards) and one G update (one forward through D) moved the estimate toward the kernel's.
  assert 0.0 < sigma(new) < _top_singular_value(state.d_params['Conv_1']['kernel']) * 1.0001
  assert sigma(new) != 1.0
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert models.network_config('discriminator', 'conv', features=(4,), kernel_size=3).spectral_norm is False


def test_turning_it_on_for_a_run_without_it_is_refused_naming_the_new_state(tiny_run, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dcgan_jax import errors  # pylint: disable=g-import-not-at-top
  from dcgan_jax.trainer import loop  # pylint: disable=g-import-not-at-top
  workdir = shutil.copytree(tiny_run, tmp_path / 'run')
  config = conftest.tiny_config()
  config.num_epochs = 2
  config.model.discriminator.spectral_norm = True
  with tfds.testing.mock_data(num_examples=32), pytest.raises(errors.CheckpointError) as raised:
    loop.train_and_evaluate(config, str(workdir))
  assert 'another model' in str(raised.value) and 'd_batch_stats/SpectralNorm_0' in str(raised.value)
