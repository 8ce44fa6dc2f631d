"""Output shapes and parameter counts of the MNIST DCGAN, and that widths come from the config."""

import jax
import jax.numpy as jnp
import pytest

from configs import mnist
from dcgan_jax import models


def _init(config):
  g, d = models.build(config)
  size = models.output_size(config)
  gv = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((2, config.latent_dim)), train=False))
  dv = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((2, size, size, 1)), train=False))
  return g, d, gv, dv


def test_mnist_dcgan_shapes_and_parameter_counts():
  config = mnist.get_config()
  g, d, gv, dv = _init(config)
  # G: 100*7*7*256 (no bias) + BN 2*256 + 5*5*256*128 (no bias) + BN 2*128 + 5*5*128*1 + 1.
  assert models.count_params(gv['params']) == 1_254_400 + 512 + 819_200 + 256 + 3_200 + 1
  assert models.count_params(gv['batch_stats']) == 2 * (256 + 128)
  # D: 5*5*1*128 (no bias) + BN 2*128 + 5*5*128*256 (no bias) + BN 2*256 + 7*7*256*1 + 1.
  assert models.count_params(dv['params']) == 3_200 + 256 + 819_200 + 512 + 12_544 + 1
  assert models.count_params(dv['batch_stats']) == 2 * (128 + 256)
  variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), gv)
  images = g.apply(variables, jnp.ones((3, 100)), train=False)
  assert images.shape == (3, 28, 28, 1)
  logits = d.apply(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), dv), images, train=False)
  assert logits.shape == (3,)


def test_generator_output_is_in_tanh_range(config):
  g, _ = models.build(config)
  variables = g.init(jax.random.key(0), jnp.zeros((1, config.latent_dim)), train=False)
  images = g.apply(variables, 50 * jax.random.normal(jax.random.key(1), (4, config.latent_dim)), train=False)
  assert images.shape == (4, 28, 28, 1)
  assert float(images.min()) >= -1.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize('start,features,size', [(4, (32, 16, 8), 32), (7, (16,), 14)])
def test_widths_and_sizes_come_from_config(config, start, features, size):
  config.model.g_start_size = start
  config.model.g_features = features
  config.data.image_size = size
  g, _, gv, _ = _init(config)
  kernels = [v['kernel'].shape for k, v in sorted(gv['params'].items()) if k.startswith('ConvTranspose')]
  assert [k[-1] for k in kernels] == list(features) + [1]
  assert kernels[0][:2] == (start, start)
  assert models.output_size(config) == size


def test_mlp_gan_has_the_published_sizes():
  from configs import fashion_mnist_mlp  # pylint: disable=g-import-not-at-top
  config = fashion_mnist_mlp.get_config()
  g, d, gv, dv = _init(config)
  # Published (Keras, BatchNorm's moving statistics included): G 1,493,520 and D 533,505 values.
  assert models.count_params(gv) == 1_493_520
  assert models.count_params(dv) == 533_505
  variables = g.init(jax.random.key(0), jnp.zeros((1, 100)), train=False)
  images = g.apply(variables, jax.random.normal(jax.random.key(1), (3, 100)), train=False)
  assert images.shape == (3, 28, 28, 1)
  assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
  assert models.data_range(config) == (0.0, 1.0)
