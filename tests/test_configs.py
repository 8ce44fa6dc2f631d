"""Every config in configs/ validates and builds networks of the right shapes; bad values are rejected."""

import importlib
import pathlib

import jax
import jax.numpy as jnp
import pytest

from dcgan_jax.configs import default
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import models

CONFIG_NAMES = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1] / 'configs').glob('*.py')
                      if p.stem != '__init__')


def test_the_config_list_is_complete():
  assert {'default', 'mnist', 'fashion_mnist', 'mnist_fnn', 'emnist_letters', 'folder', 'rock_paper_scissors',
          'cifar10', 'fashion_mnist_mlp', 'mnist_mlp', 'mnist_conditional', 'emnist_letters_conditional',
          'rock_paper_scissors_conditional'} <= set(CONFIG_NAMES)


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_config_validates_and_builds(name):
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  config_validation.validate(config)
  g, d = models.build(config)
  z = jax.ShapeDtypeStruct((3, config.latent_dim), jnp.float32)
  kw = {'labels': jnp.zeros((3,), jnp.int32)} if config.num_classes else {}  # Class-conditional configs.
  g_vars = jax.eval_shape(lambda z: g.init(jax.random.key(0), z, train=False, **kw), z)
  images = jax.eval_shape(lambda v, z: g.apply(v, z, train=False, **kw), g_vars, z)
  size = config.data.image_size
  assert images.shape == (3, size, size, config.data.channels) and images.dtype == jnp.float32
  assert models.output_size(config) == size
  d_vars = jax.eval_shape(lambda x: d.init(jax.random.key(0), x, train=False, **kw), images)
  logits = jax.eval_shape(lambda v, x: d.apply(v, x, train=False, **kw), d_vars, images)
  assert logits.shape == (3,) and logits.dtype == jnp.float32


# (config, num_classes, G parameters, D parameters). A conditional config adds to its base: G the K x latent label
# embedding and the first layer's weights for it, D one projection vector per class over the last features.
_CONDITIONAL_COUNTS = [
    ('mnist', 0, 2_077_569, 835_713),
    ('mnist_conditional', 10, 2_077_569 + 10 * 100 + 100 * 7 * 7 * 256, 835_713 + 10 * 7 * 7 * 256),
    ('emnist_letters', 0, 2_368_705, 4_311_553),
    ('emnist_letters_conditional', 27, 2_368_705 + 27 * 100 + 100 * 7 * 7 * 256, 4_311_553 + 27 * 4 * 4 * 512),
    ('rock_paper_scissors', 0, 3_258_083, 306_369),
    ('rock_paper_scissors_conditional', 3, 3_258_083 + 3 * 100 + 100 * 10 * 10 * 256,
     306_369 + 3 * 19 * 19 * 128),
]


@pytest.mark.parametrize('name,num_classes,g_count,d_count', _CONDITIONAL_COUNTS,
                         ids=[c[0] for c in _CONDITIONAL_COUNTS])
def test_conditional_configs_and_their_parameter_counts(name, num_classes, g_count, d_count):
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  assert config.num_classes == num_classes
  g, d = models.build(config)
  kw = {'labels': jnp.zeros((2,), jnp.int32)} if num_classes else {}
  size, channels = config.data.image_size, config.data.channels
  g_vars = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((2, config.latent_dim)), train=False, **kw))
  d_vars = jax.eval_shape(lambda: d.init(jax.random.key(0), jnp.zeros((2, size, size, channels)), train=False,
                                         **kw))
  assert (models.count_params(g_vars['params']), models.count_params(d_vars['params'])) == (g_count, d_count)


def test_num_classes_is_checked():
  config = default.get_config()
  config.num_classes = 1
  with pytest.raises(errors.ConfigError, match=r'config.num_classes=1: must be 0 \(unconditional\) or an integer '
                                               r'>= 2 \(the number of classes\)'):
    config_validation.validate(config)
  config.num_classes = 5
  config.schedule = 'adaptive'
  with pytest.raises(errors.ConfigError, match='config.num_classes=5 with schedule=adaptive: the adaptive checks '
                                               'are not class-conditional; use --config.schedule=alternating'):
    config_validation.validate(config)


@pytest.mark.parametrize('field,value,message', [
    ('loss', 'wgan', 'config.loss=.wgan.: must be one of hinge, lsgan, minimax, non_saturating, ragan, rpgan, wgan_gp'),
    ('data.source', 'lmdb', 'config.data.source=.lmdb.: must be one of auto, tfds, bundled, idx, folder'),
    ('model.generator.family', 'resnet', 'config.model.generator.family=.resnet.: must be one of dcgan, upsample, mlp'),
    ('model.discriminator.family', 'dcgan', 'config.model.discriminator.family=.dcgan.: must be one of conv, mlp'),
    ('model.discriminator.pool', 'avg', 'config.model.discriminator.pool=.avg.: must be one of none, max'),
    ('model.discriminator.strides', (2, 2, 2), r'config.model.discriminator.strides=\(2, 2, 2\): must be \(\) or one '
     r'integer >= 1 per entry of model.discriminator.features \(2\)'),
    ('model.discriminator.dropout', 1.0, r'config.model.discriminator.dropout=1.0: must be a number in \[0, 1\)'),
    ('model.generator.features', (), r'config.model.generator.features=\(\): must be a non-empty list of integers > 0'),
    ('model.generator.kernel_size', 0, 'config.model.generator.kernel_size=0: must be an integer > 0'),
    ('model.generator.activation', 'gelu', "config.model.generator.activation='gelu': must be one of leaky_relu, relu"),
    ('model.generator.output_activation', 'relu', "config.model.generator.output_activation='relu': must be one of "
     'tanh, sigmoid'),
    ('model.generator.bn_momentum', 1.0, r'config.model.generator.bn_momentum=1.0: must be a number in \[0, 1\)'),
    ('model.discriminator.bn_epsilon', 0.0, 'config.model.discriminator.bn_epsilon=0.0: must be a finite number > 0'),
    ('label_smoothing', -0.1, 'config.label_smoothing'),
    ('d_steps', 0, 'config.d_steps=0: must be an integer > 0'),
    ('schedule', 'cyclic', 'config.schedule=.cyclic.: must be one of alternating, epoch_blocks, adaptive'),
    ('g_target', 1.5, r'config.g_target=1.5: must be a number in \[0, 1\]'),
    ('checkpoint_every_epochs', -1, 'config.checkpoint_every_epochs'),
    ('model.generator.start_size', -1, r'config.model.generator.start_size=-1: must be an integer >= 0 \(0 derives'),
    ('data.image_size', 30, 'config.data.image_size=30: the dcgan generator makes 28x28'),
])
def test_bad_values_are_rejected(field, value, message):
  config = default.get_config()
  *parents, leaf = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[leaf] = value
  with pytest.raises(errors.ConfigError, match=message):
    config_validation.validate(config)


def test_loss_options_are_checked_against_the_loss():
  config = default.get_config()
  config.loss, config.label_smoothing = 'hinge', 0.1
  with pytest.raises(errors.ConfigError, match='config.label_smoothing=0.1: loss hinge has no targets'):
    config_validation.validate(config)
  config.loss, config.label_smoothing = 'wgan_gp', 0.0
  with pytest.raises(errors.ConfigError, match='config.model.discriminator.batchnorm=True with loss=wgan_gp'):
    config_validation.validate(config)
  config.model.discriminator.batchnorm = False
  config_validation.validate(config)
  config.gp_weight = -1.0
  with pytest.raises(errors.ConfigError, match='config.gp_weight=-1.0'):
    config_validation.validate(config)
  config.loss, config.gp_weight, config.label_smoothing = 'lsgan', 10.0, 0.1
  config_validation.validate(config)


def test_generator_sizes_are_checked_per_family():
  config = default.get_config()
  config.model.generator.start_size, config.model.generator.features = 0, (8, 8, 8, 8, 8)  # 2**5 = 32 > 28.
  with pytest.raises(errors.ConfigError, match='config.model.generator.features has 5 entries: 5 doublings overshoot '
                     'data.image_size=28'):
    config_validation.validate(config)
  config.model.generator = models.network_config('generator', 'upsample', start_size=6, features=(8, 8, 8, 8, 8),
                                                 kernel_size=5)
  with pytest.raises(errors.ConfigError, match='config.model.generator.start_size=6 at most 5 times'):
    config_validation.validate(config)
  config.model.generator.start_size = 0
  config_validation.validate(config)


@pytest.mark.parametrize('size,g_features,d_features', [
    ('128', (512, 256, 128, 64, 32), (32, 64, 128, 256, 512)),
    ('64', (512, 256, 128, 64), (64, 128, 256, 512)),  # The PyTorch DCGAN example's widths.
])
def test_folder_config_takes_the_image_size_after_a_colon(size, g_features, d_features):
  config = importlib.import_module('dcgan_jax.configs.folder').get_config(size)
  assert config.data.image_size == int(size) and models.output_size(config) == int(size)
  assert config.model.generator.features == g_features and config.model.discriminator.features == d_features
  config_validation.validate(config)
  with pytest.raises(ValueError, match='4 times a power of two'):
    importlib.import_module('dcgan_jax.configs.folder').get_config('96')


def test_the_bundled_source_exists_only_for_mnist():
  config = default.get_config()
  config.data.source, config.data.name = 'bundled', 'fashion_mnist'
  with pytest.raises(errors.ConfigError, match="config.data.name='fashion_mnist': source=bundled has only mnist"):
    config_validation.validate(config)
  config.data.name = 'mnist'
  config_validation.validate(config)


@pytest.mark.parametrize('schedule', ['epoch_blocks', 'adaptive'])
def test_relativistic_losses_need_the_alternating_schedule(schedule):
  config = default.get_config()
  config.loss, config.schedule = 'rpgan', schedule
  with pytest.raises(errors.ConfigError, match=f"config.loss='rpgan': a relativistic loss .* schedule '{schedule}'"):
    config_validation.validate(config)


# The networks' sections: `family` and the module's own fields.

_DCGAN_G_FIELDS = 'family, start_size, features, kernel_size, leaky_slope, bn_momentum, bn_epsilon, activation, ' \
                  'output_activation, conditional_batchnorm, spectral_norm, weight_init, output_weight_init'


def _problems(config):
  with pytest.raises(errors.ConfigError) as raised:
    config_validation.validate(config)
  lines = str(raised.value).splitlines()
  assert lines[0] == 'invalid config:'
  return [line.strip() for line in lines[1:]]


def test_default_sections_hold_exactly_the_modules_fields():
  config = default.get_config()
  assert dict(config.model.generator) == {
      'family': 'dcgan', 'start_size': 7, 'features': (256, 128), 'kernel_size': 5, 'leaky_slope': 0.2,
      'bn_momentum': 0.99, 'bn_epsilon': 1e-3, 'activation': 'leaky_relu', 'output_activation': 'tanh',
      'conditional_batchnorm': False, 'spectral_norm': False, 'weight_init': 'flax', 'output_weight_init': ''}
  assert dict(config.model.discriminator) == {
      'family': 'conv', 'features': (128, 256), 'kernel_size': 5, 'leaky_slope': 0.2, 'bn_momentum': 0.99,
      'bn_epsilon': 1e-3, 'first_batchnorm': True, 'batchnorm': True, 'strides': (), 'pool': 'none', 'dropout': 0.0,
      'activation': 'leaky_relu', 'spectral_norm': False, 'weight_init': 'flax'}
  assert sorted(config.model) == ['discriminator', 'generator', 'sample_use_batch_stats', 'sync_batchnorm']


def test_a_misspelt_network_field_is_one_line_naming_the_valid_fields():
  config = default.get_config()
  config.model.generator.kernel_sizes = 3
  assert _problems(config) == [
      'config.model.generator.kernel_sizes: the dcgan generator (DCGANGenerator) has no field kernel_sizes; its '
      f'fields: {_DCGAN_G_FIELDS}']


def test_another_familys_fields_name_the_family_rule():
  config = default.get_config()
  config.model.discriminator.family = 'mlp'  # As --config.model.discriminator.family=mlp would.
  hint = '; to change family, start from a config of that family: docs/configuration.md)'
  fields = 'family, features, leaky_slope, activation, dropout, spectral_norm'
  assert _problems(config) == [
      f'config.model.discriminator.{name}: the mlp discriminator (MLPDiscriminator) has no field {name}; its fields: '
      f'{fields} ({name} belongs to the conv discriminator{hint}'
      for name in sorted(('kernel_size', 'bn_momentum', 'bn_epsilon', 'first_batchnorm', 'batchnorm', 'strides',
                          'pool', 'weight_init'))]  # ConfigDict iterates its keys sorted.


def test_a_missing_required_field_and_a_flat_model_field_are_rejected():
  config = default.get_config()
  del config.model.generator['features']
  config.model.g_features = (256, 128)  # The flat layout of 0.1.
  assert _problems(config) == [
      'config.model.g_features: not a field; config.model has generator, discriminator, sync_batchnorm, '
      "sample_use_batch_stats (the networks' fields are under model.generator and model.discriminator, see "
      'docs/configuration.md)',
      'config.model.generator: the dcgan generator (DCGANGenerator) needs features']


def test_network_config_fills_the_module_defaults_and_refuses_unknown_fields():
  section = models.network_config('discriminator', 'mlp', features=(8,))
  assert dict(section) == {'family': 'mlp', 'features': (8,), 'leaky_slope': 0.2, 'activation': 'leaky_relu',
                           'dropout': 0.0, 'spectral_norm': False}
  with pytest.raises(errors.ConfigError, match=r'^config.model.discriminator.pool: the mlp discriminator '
                                               r'\(MLPDiscriminator\) has no field pool;'):
    models.network_config('discriminator', 'mlp', features=(8,), pool='max')
  with pytest.raises(errors.ConfigError, match=r'^config.model.generator: the upsample generator \(UpsampleGenerator\) '
                                               'needs start_size, kernel_size$'):
    models.network_config('generator', 'upsample', features=(8,))


def test_a_new_module_field_is_a_config_field(monkeypatch):
  """One field on the module is all a new option needs: configs carry it, validation accepts it, build passes it."""

  class WiderGenerator(models.MLPGenerator):
    width_multiplier: int = 1

  monkeypatch.setitem(models.GENERATORS, 'mlp', WiderGenerator)
  config = default.get_config()
  config.model.generator = models.network_config('generator', 'mlp', features=(8,))
  assert config.model.generator.width_multiplier == 1
  config.model.generator.width_multiplier = 3
  config_validation.validate(config)
  assert models.build_network(config, 'generator').width_multiplier == 3


def test_command_line_sets_network_fields_within_the_configs_family():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  root = pathlib.Path(__file__).resolve().parents[1]

  def parse(name, *overrides):
    argv = [__file__, f'--config={root / "configs" / name}.py', *overrides]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', flag_values=values, sys_argv=argv)
    values(argv)
    return values.config

  config = parse('mnist', '--config.model.generator.features=(8,4)', '--config.model.discriminator.pool=max',
                 '--config.model.generator.leaky_slope=0.1')
  assert config.model.generator.features == (8, 4) and config.model.generator.leaky_slope == 0.1
  assert config.model.discriminator.pool == 'max'
  config_validation.validate(config)
  config = parse('mnist_mlp', '--config.model.generator.batchnorm=False', '--config.model.discriminator.dropout=0.3')
  assert (config.model.generator.batchnorm, config.model.discriminator.dropout) == (False, 0.3)
  with pytest.raises(AttributeError, match='kernel_size'):  # main.py reports it in one line (tests/test_main.py).
    parse('mnist_mlp', '--config.model.generator.kernel_size=3')  # Not an mlp generator's field.


def test_inception_weights_must_be_an_existing_file_or_empty(tmp_path):
  config = default.get_config()
  config.eval_inception_weights = str(tmp_path / 'absent.npz')
  with pytest.raises(errors.ConfigError, match=r"config.eval_inception_weights='.*absent.npz': no such file; pass "
                                               r"pytorch-fid's pt_inception-2015-12-05-6726825d.pth"):
    config_validation.validate(config)
  (tmp_path / 'absent.npz').write_bytes(b'')  # Its content is checked when the run loads it.
  config_validation.validate(config)


def test_the_mnist_configs_initial_weights_and_class_loss():
  """configs/mnist.py draws its initial weights as PyTorch does but for G's output layer (flax's; measured:
  docs/evaluation.md); the configs measured before that keep flax's; the conditional MNIST config adds the
  classification loss."""
  # pylint: disable-next=g-import-not-at-top
  from dcgan_jax.configs import fashion_mnist, mnist, mnist_conditional, mnist_rpgan
  inits = lambda c: (c.model.generator.weight_init, c.model.generator.output_weight_init,
                     c.model.discriminator.weight_init)
  assert inits(mnist.get_config()) == ('pytorch', 'flax', 'pytorch') == inits(mnist_conditional.get_config())
  assert inits(fashion_mnist.get_config()) == ('flax', '', 'flax') == inits(mnist_rpgan.get_config())
  assert inits(default.get_config()) == ('flax', '', 'flax')
  assert (mnist.get_config().class_loss_weight, mnist_conditional.get_config().class_loss_weight) == (0.0, 0.3)
