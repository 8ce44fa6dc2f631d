"""Output shapes and parameter counts of every model family, and that widths and sizes come from the config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from dcgan_jax.configs import mnist
from dcgan_jax import errors
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
  config.model.generator.start_size = start
  config.model.generator.features = features
  config.data.image_size = size
  g, _, gv, _ = _init(config)
  kernels = [v['kernel'].shape for k, v in sorted(gv['params'].items()) if k.startswith('ConvTranspose')]
  assert [k[-1] for k in kernels] == list(features) + [1]
  assert kernels[0][:2] == (start, start)
  assert models.output_size(config) == size


def test_mlp_gan_has_the_published_sizes():
  from dcgan_jax.configs import fashion_mnist_mlp  # pylint: disable=g-import-not-at-top
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


# The other families and the dcgan options.


def _shapes(config, batch=2):
  """Variables and output shapes of both networks, without compiling (jax.eval_shape)."""
  g, d = models.build(config)
  z = jax.ShapeDtypeStruct((batch, config.latent_dim), jnp.float32)
  gv = jax.eval_shape(lambda z: g.init(jax.random.key(0), z, train=False), z)
  images = jax.eval_shape(lambda v, z: g.apply(v, z, train=False), gv, z)
  dv = jax.eval_shape(lambda x: d.init(jax.random.key(0), x, train=False), images)
  logits = jax.eval_shape(lambda v, x: d.apply(v, x, train=False), dv, images)
  return gv, dv, images.shape, logits.shape


def _random_variables(module, *inputs):
  """Variables for `module` without compiling its init (slow on a busy CPU): weights N(0, 0.3^2), BatchNorm
  statistics mean 0 and variance 1."""
  shapes = jax.eval_shape(lambda *x: module.init(jax.random.key(0), *x, train=False), *inputs)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    if path[0].key == 'batch_stats':
      return jnp.full(leaf.shape, 1.0 if path[-1].key == 'var' else 0.0, leaf.dtype)
    return jnp.asarray(0.3 * rng.standard_normal(leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def test_emnist_letters_gan_has_the_published_sizes():
  from dcgan_jax.configs import emnist_letters  # pylint: disable=g-import-not-at-top
  gv, dv, image_shape, logit_shape = _shapes(emnist_letters.get_config())
  # Published (Keras, BatchNorm's moving statistics included).
  assert models.count_params(gv) == 2_394_241
  assert models.count_params(dv) == 4_311_553
  # BatchNorm over the flat 7*7*256 projection, then after the 128, 64 and 32 convs: 2 statistics each.
  assert models.count_params(gv['batch_stats']) == 2 * (7 * 7 * 256 + 128 + 64 + 32)
  assert 'batch_stats' not in dv
  assert image_shape == (2, 28, 28, 1) and logit_shape == (2,)


def test_mnist_fnn_sizes():
  from dcgan_jax.configs import mnist_fnn  # pylint: disable=g-import-not-at-top
  gv, dv, image_shape, _ = _shapes(mnist_fnn.get_config())
  assert models.count_params(gv) == (100 * 128 + 128) + (128 * 784 + 784)  # No BatchNorm.
  assert models.count_params(dv) == (784 * 128 + 128) + (128 + 1)
  assert image_shape == (2, 28, 28, 1)


def test_300x300_generator_is_exact():
  from dcgan_jax.configs import rock_paper_scissors  # pylint: disable=g-import-not-at-top
  _, _, image_shape, logit_shape = _shapes(rock_paper_scissors.get_config())
  assert image_shape == (2, 300, 300, 3) and logit_shape == (2,)


@pytest.mark.parametrize('size,n,expected', [(128, 5, (4, 128)), (28, 2, (7, 28)), (300, 5, (10, 320)),
                                             (300, 6, (5, 320)), (32, 3, (4, 32))])
def test_dcgan_derived_start_sizes(size, n, expected):
  assert models.dcgan.generator_sizes(size, 0, n) == expected


def test_derived_start_crops_the_center_of_the_uncropped_generator(config):
  config.data.image_size = 10
  config.model.generator.start_size = 0  # ceil(10 / 4) = 3 -> 12, cropped to 10.
  g, _ = models.build(config)
  assert (g.start_size, g.output_size) == (3, 10)
  z = jax.random.normal(jax.random.key(1), (2, config.latent_dim))
  variables = _random_variables(g, z)
  cropped, full = jax.jit(lambda v: (g.apply(v, z, train=False), g.clone(output_size=0).apply(v, z, train=False)))(
      variables)
  assert cropped.shape == (2, 10, 10, 1) and full.shape == (2, 12, 12, 1)
  np.testing.assert_array_equal(cropped, full[:, 1:11, 1:11])


@pytest.mark.parametrize('size,start,convs,expected', [(28, 0, 4, (7, 2)), (28, 7, 4, (7, 2)), (32, 0, 3, (4, 3)),
                                                       (5, 0, 3, (5, 0))])
def test_upsample_start_sizes(size, start, convs, expected):
  assert models.upsample.generator_sizes(size, start, convs) == expected


@pytest.mark.parametrize('start,convs', [(6, 4), (7, 1)])
def test_upsample_impossible_start_is_a_config_error(start, convs):
  with pytest.raises(errors.ConfigError, match=f'config.model.generator.start_size={start} at most {convs} times'):
    models.upsample.generator_sizes(28, start, convs)


def _tiny_upsample(config):
  config.model.generator = models.network_config('generator', 'upsample', start_size=7, features=(4, 3, 2),
                                                 kernel_size=5, dropout=0.5)
  d = config.model.discriminator
  d.features, d.dropout, d.batchnorm = (2, 3), 0.5, False
  return config


def test_dropout_follows_train_and_deterministic(config):
  g, d = models.build(_tiny_upsample(config))
  z = jax.random.normal(jax.random.key(1), (2, config.latent_dim))
  images = jnp.ones((2, 28, 28, 1))
  g_vars, d_vars = _random_variables(g, z), _random_variables(d, images)

  @jax.jit
  def outputs(k1, k2):
    train = lambda key: g.apply(g_vars, z, train=True, mutable=['batch_stats'], rngs={'dropout': key})[0]
    # Batch statistics without masks (sampling with `sample_use_batch_stats`): no 'dropout' rng is needed.
    no_masks = g.apply(g_vars, z, train=True, deterministic=True, mutable=['batch_stats'])[0]
    logits = lambda key: d.apply(d_vars, images, train=True, rngs={'dropout': key})
    return train(k1), train(k2), no_masks, g.apply(g_vars, z, train=False), logits(k1), logits(k2), d.apply(
        d_vars, images, train=False)

  a, b, no_masks, inference, logits_a, logits_b, d_inference = outputs(jax.random.key(2), jax.random.key(3))
  assert not np.allclose(a, b)  # Training: masks from the 'dropout' rng.
  assert not np.allclose(logits_a, logits_b)
  # Without masks, batch statistics differ from running averages but dropout is off: same as the unmasked mean.
  assert not np.allclose(no_masks, a) and no_masks.shape == inference.shape
  assert np.all(np.isfinite(d_inference))


def test_deterministic_turns_dropout_off(config):
  """deterministic=True (and train=False) give exactly the network without dropout, whatever the dropout key."""
  g, d = models.build(_tiny_upsample(config))
  plain = _tiny_upsample(conftest.tiny_config())
  plain.model.generator.dropout = plain.model.discriminator.dropout = 0.0
  g_plain, d_plain = models.build(plain)
  z = jax.random.normal(jax.random.key(1), (2, config.latent_dim))
  images = jax.random.uniform(jax.random.key(4), (2, 28, 28, 1), minval=-1.0, maxval=1.0)
  g_vars, d_vars = _random_variables(g, z), _random_variables(d, images)
  for key in (jax.random.key(2), jax.random.key(3)):
    rngs = {'dropout': key}
    masked_off = g.apply(g_vars, z, train=True, deterministic=True, mutable=['batch_stats'], rngs=rngs)[0]
    np.testing.assert_array_equal(masked_off, g_plain.apply(g_vars, z, train=True, deterministic=True,
                                                            mutable=['batch_stats'])[0])
    np.testing.assert_array_equal(d.apply(d_vars, images, train=False, rngs=rngs),
                                  d_plain.apply(d_vars, images, train=False))


def test_max_pool_discriminator_blocks(config):
  config.data.image_size = 10
  config.model.generator.start_size = 0
  d = config.model.discriminator
  d.pool, d.kernel_size, d.batchnorm = 'max', 3, False
  _, dv, _, logit_shape = _shapes(config)
  params = dv['params']
  # Stride-1 3x3 convs with bias (no BatchNorm); 10 -> pool 5 -> pool 3, then a 3x3 'VALID' conv to the logit.
  assert params['Conv_0']['kernel'].shape == (3, 3, 1, 4) and 'bias' in params['Conv_0']
  assert params['Conv_2']['kernel'].shape == (3, 3, 8, 1)
  assert logit_shape == (2,)


def _slow_xla_cpu_convs(jaxpr):
  """Convolutions, in `jaxpr` and its sub-jaxprs, whose kernel is larger than their (undilated) input.

  That form (a forward conv with a kernel larger than the input, or an input gradient whose output gradient is
  smaller than the kernel) runs on XLA:CPU's slow path, 10-60x below its other convolutions (see dcgan_jax.ops.convolution).
  """
  import jax.extend  # pylint: disable=g-import-not-at-top
  slow = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      lhs, rhs = (v.aval.shape for v in eqn.invars)
      dnums = eqn.params['dimension_numbers']
      lhs_spatial = [lhs[d] for d in dnums.lhs_spec[2:]]
      rhs_spatial = [rhs[d] for d in dnums.rhs_spec[2:]]
      if any(k > n for k, n in zip(rhs_spatial, lhs_spatial)):
        slow.append((lhs, rhs))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      slow.extend(_slow_xla_cpu_convs(sub))
  return slow


@pytest.mark.parametrize('name', ['emnist_letters', 'mnist', 'folder', 'rock_paper_scissors'])
def test_discriminators_avoid_slow_xla_cpu_convolutions(name):
  import importlib  # pylint: disable=g-import-not-at-top
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from dcgan_jax.ops import convolution as ops_convolution  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  _, d = models.build(config)
  size = models.output_size(config)
  images = jax.ShapeDtypeStruct((2, size, size, config.data.channels), jnp.float32)
  dv = jax.eval_shape(lambda x: d.init(jax.random.key(0), x, train=False), images)

  def grads_jaxpr():
    # D's value and both gradients (parameters for the D update, images for the G update), as in training.
    loss = lambda p, rest, x: jnp.sum(d.apply({**rest, 'params': p}, x, train=False))
    rest = {k: v for k, v in dv.items() if k != 'params'}
    return jax.make_jaxpr(jax.grad(loss, argnums=(0, 2)))(dv['params'], rest, images).jaxpr

  assert not _slow_xla_cpu_convs(grads_jaxpr())
  if name == 'emnist_letters':  # Guards the check: with XLA convolutions only, the 4x4 blocks are slow.
    with mock.patch.object(ops_convolution, 'uses_im2col', lambda *args, **kwargs: False):
      assert _slow_xla_cpu_convs(grads_jaxpr())


# Every family is its module built from its config section: `Module(**fields)` plus what the builder passes.


def test_config_fields_are_the_modules_attributes_less_what_the_builder_passes():
  assert models.config_fields(models.DCGANGenerator) == (
      'start_size', 'features', 'kernel_size', 'leaky_slope', 'bn_momentum', 'bn_epsilon', 'activation',
      'output_activation', 'conditional_batchnorm', 'spectral_norm', 'weight_init', 'output_weight_init')
  assert models.config_fields(models.UpsampleGenerator) == (
      'start_size', 'features', 'kernel_size', 'leaky_slope', 'bn_momentum', 'bn_epsilon', 'activation',
      'output_activation', 'dropout')
  assert models.config_fields(models.MLPGenerator) == (
      'features', 'leaky_slope', 'bn_momentum', 'bn_epsilon', 'activation', 'output_activation', 'batchnorm')
  assert models.config_fields(models.DCGANDiscriminator) == (
      'features', 'kernel_size', 'leaky_slope', 'bn_momentum', 'bn_epsilon', 'first_batchnorm', 'batchnorm',
      'strides', 'pool', 'dropout', 'activation', 'spectral_norm', 'weight_init')
  assert models.config_fields(models.MLPDiscriminator) == ('features', 'leaky_slope', 'activation', 'dropout',
                                                          'spectral_norm')


# (network, family, the section's fields other than defaults, the module fields the builder derives for 28x28x1).
_FAMILY_CASES = [
    ('generator', 'dcgan', {'start_size': 0, 'features': (6, 4), 'kernel_size': 3, 'activation': 'relu'},
     {'start_size': 7, 'channels': 1, 'output_size': 28}),
    ('generator', 'upsample', {'start_size': 7, 'features': (6, 4, 2), 'kernel_size': 3, 'dropout': 0.25,
                               'leaky_slope': 0.01}, {'start_size': 7, 'upsamplings': 2, 'channels': 1}),
    ('generator', 'mlp', {'features': (6,), 'batchnorm': False, 'output_activation': 'tanh', 'bn_epsilon': 1e-5},
     {'image_shape': (28, 28, 1)}),
    ('discriminator', 'conv', {'features': (4, 8), 'kernel_size': 3, 'strides': (2, 1), 'pool': 'max',
                               'first_batchnorm': False, 'bn_momentum': 0.9}, {}),
    ('discriminator', 'mlp', {'features': (8, 4), 'dropout': 0.5, 'activation': 'relu'}, {}),
]


@pytest.mark.parametrize('network,family,fields,derived', _FAMILY_CASES, ids=[f'{c[0]}-{c[1]}' for c in _FAMILY_CASES])
def test_each_family_is_built_from_its_fields(config, network, family, fields, derived):
  config.dtype = 'bfloat16'
  config.model[network] = models.network_config(network, family, **fields)
  module = models.build_network(config, network)
  assert type(module) is models.NETWORKS[network][family]
  section = dict(config.model[network])
  assert section.pop('family') == family
  expected = {**section, **derived, 'dtype': jnp.bfloat16, 'bn_axis_name': None}
  assert {name: getattr(module, name) for name in expected} == expected
  assert {name: section[name] for name in fields} == fields
  if network == 'generator':
    z = jax.ShapeDtypeStruct((2, config.latent_dim), jnp.float32)
    gv = jax.eval_shape(lambda z: module.init(jax.random.key(0), z, train=False), z)
    images = jax.eval_shape(lambda v, z: module.apply(v, z, train=False), gv, z)
    assert images.shape == (2, 28, 28, 1) and images.dtype == jnp.float32


def test_a_generator_module_passed_in_is_used_whatever_the_config_section(config):
  """create_train_state builds only what is not passed: a researcher's generator needs no valid section."""
  import dcgan_jax  # pylint: disable=g-import-not-at-top
  config.model.generator.family = 'mine'  # Not a family: never built.
  generator = models.MLPGenerator(features=(4,), image_shape=(28, 28, 1))
  state = jax.eval_shape(lambda: dcgan_jax.create_train_state(config, jax.random.key(0), generator=generator))
  assert state.generator is generator and type(state.discriminator) is models.DCGANDiscriminator
  assert models.count_params(state.g_params) == (8 * 4 + 4) + 2 * 4 + (4 * 784 + 784)


def test_pytorch_init_draws_every_weight_within_pytorchs_bounds():
  """weight_init='pytorch': kernels and biases uniform in +-1/sqrt(fan_in), fan_in as PyTorch counts it (a transposed
  convolution's: out_channels * kh * kw); BatchNorm starts at scale 1, offset 0 either way."""
  config = mnist.get_config()
  config.model.generator.weight_init = config.model.discriminator.weight_init = 'pytorch'
  config.model.generator.output_weight_init = ''  # The output layer too (configs/mnist.py draws it as flax does).
  variables = {net: models.build_network(config, net).init(jax.random.key(0), x, train=False)['params']
               for net, x in (('generator', jnp.zeros((2, 100))), ('discriminator', jnp.zeros((2, 28, 28, 1))))}
  fan_ins = {('generator', 'ConvTranspose_0'): 256 * 7 * 7, ('generator', 'ConvTranspose_1'): 128 * 5 * 5,
             ('generator', 'ConvTranspose_2'): 1 * 5 * 5, ('discriminator', 'Conv_0'): 1 * 5 * 5,
             ('discriminator', 'Conv_1'): 128 * 5 * 5, ('discriminator', 'Conv_2'): 256 * 7 * 7}
  for (net, layer), fan_in in fan_ins.items():
    for name, value in variables[net][layer].items():
      value, bound = np.abs(np.asarray(value)), 1 / np.sqrt(fan_in)
      assert value.max() <= bound, (net, layer, name)
      if value.size >= 100:  # Uniform over the whole range, not a narrower law.
        assert value.max() > 0.95 * bound and abs(value.mean() - bound / 2) < 0.05 * bound, (net, layer, name)
  assert float(variables['generator']['BatchNorm_0']['scale'].min()) == 1.0
  config.model.generator.weight_init = 'flax'
  flax_kernel = models.build_network(config, 'generator').init(jax.random.key(0), jnp.zeros((2, 100)), train=False)
  assert np.abs(np.asarray(flax_kernel['params']['ConvTranspose_2']['bias'])).max() == 0.0  # flax: zero biases.


@pytest.mark.parametrize('weight_init,output_weight_init', [('pytorch', 'flax'), ('flax', 'pytorch')])
def test_output_weight_init_draws_the_output_layer_only(weight_init, output_weight_init):
  """model.generator.output_weight_init: the output layer drawn by that rule (the same draw as a generator of that
  weight_init), every other layer by weight_init; '' means as weight_init."""
  config = mnist.get_config()
  config.model.generator.weight_init = weight_init
  params = lambda: models.build_network(config, 'generator').init(jax.random.key(0), jnp.zeros((2, 100)),
                                                                  train=False)['params']
  plain = params()
  config.model.generator.output_weight_init = output_weight_init
  mixed = params()
  config.model.generator.weight_init, config.model.generator.output_weight_init = output_weight_init, ''
  other = params()
  jax.tree.map(np.testing.assert_array_equal, mixed['ConvTranspose_2'], other['ConvTranspose_2'])
  for layer in ('ConvTranspose_0', 'ConvTranspose_1', 'BatchNorm_0', 'BatchNorm_1'):
    jax.tree.map(np.testing.assert_array_equal, mixed[layer], plain[layer])
  kernel = np.abs(np.asarray(mixed['ConvTranspose_2']['kernel']))
  if output_weight_init == 'pytorch':  # Uniform in +-1/sqrt(out_channels * 5 * 5) = +-0.2.
    assert 0.19 < kernel.max() <= 0.2
  else:  # lecun_normal over 5 * 5 * 128 inputs: std 0.0177, truncated at 2 std (of the untruncated law).
    assert kernel.max() < 2 * 0.0177 / 0.8796 and float(np.abs(np.asarray(mixed['ConvTranspose_2']['bias'])).max()) == 0


def test_a_bad_output_weight_init_is_one_config_line():
  from dcgan_jax import config_validation  # pylint: disable=g-import-not-at-top
  from dcgan_jax import errors  # pylint: disable=g-import-not-at-top
  config = mnist.get_config()
  config.model.generator.output_weight_init = 'torch'
  with pytest.raises(errors.ConfigError, match=r"config.model.generator.output_weight_init='torch': must be '' \(as "
                                                r"weight_init\) or one of flax, pytorch"):
    config_validation.validate(config)
