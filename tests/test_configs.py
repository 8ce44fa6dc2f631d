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
          'cifar10', 'fashion_mnist_mlp', 'mnist_mlp'} <= set(CONFIG_NAMES)


@pytest.mark.parametrize('name', CONFIG_NAMES)
def test_every_config_validates_and_builds(name):
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  config_validation.validate(config)
  g, d = models.build(config)
  z = jax.ShapeDtypeStruct((3, config.latent_dim), jnp.float32)
  g_vars = jax.eval_shape(lambda z: g.init(jax.random.key(0), z, train=False), z)
  images = jax.eval_shape(lambda v, z: g.apply(v, z, train=False), g_vars, z)
  size = config.data.image_size
  assert images.shape == (3, size, size, config.data.channels) and images.dtype == jnp.float32
  assert models.output_size(config) == size
  d_vars = jax.eval_shape(lambda x: d.init(jax.random.key(0), x, train=False), images)
  logits = jax.eval_shape(lambda v, x: d.apply(v, x, train=False), d_vars, images)
  assert logits.shape == (3,) and logits.dtype == jnp.float32


@pytest.mark.parametrize('field,value,message', [
    ('loss', 'wgan', 'config.loss=.wgan.: must be one of hinge, lsgan, minimax, non_saturating, ragan, rpgan, wgan_gp'),
    ('data.source', 'lmdb', 'config.data.source=.lmdb.: must be one of auto, tfds, bundled, idx, folder'),
    ('model.name', 'resnet', 'config.model.name=.resnet.: must be one of dcgan, upsample, mlp'),
    ('model.d_pool', 'avg', 'config.model.d_pool'),
    ('model.d_strides', (2, 2, 2), 'config.model.d_strides'),
    ('model.d_dropout', 1.0, r'config.model.d_dropout=1.0: must be a number in \[0, 1\)'),
    ('label_smoothing', -0.1, 'config.label_smoothing'),
    ('d_steps', 0, 'config.d_steps=0: must be an integer > 0'),
    ('schedule', 'cyclic', 'config.schedule=.cyclic.: must be one of alternating, epoch_blocks, adaptive'),
    ('g_target', 1.5, r'config.g_target=1.5: must be a number in \[0, 1\]'),
    ('checkpoint_every_epochs', -1, 'config.checkpoint_every_epochs'),
    ('model.g_start_size', -1, 'config.model.g_start_size'),
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
  with pytest.raises(errors.ConfigError, match='config.model.d_batchnorm=True with loss=wgan_gp'):
    config_validation.validate(config)
  config.model.d_batchnorm = False
  config_validation.validate(config)
  config.gp_weight = -1.0
  with pytest.raises(errors.ConfigError, match='config.gp_weight=-1.0'):
    config_validation.validate(config)
  config.loss, config.gp_weight, config.label_smoothing = 'lsgan', 10.0, 0.1
  config_validation.validate(config)


def test_generator_sizes_are_checked_per_family():
  config = default.get_config()
  config.model.g_start_size, config.model.g_features = 0, (8, 8, 8, 8, 8)  # 2**5 = 32 > 28.
  with pytest.raises(errors.ConfigError, match='overshoot data.image_size=28'):
    config_validation.validate(config)
  config.model.name, config.model.g_start_size = 'upsample', 6
  with pytest.raises(errors.ConfigError, match='g_start_size=6'):
    config_validation.validate(config)
  config.model.g_start_size = 0
  config_validation.validate(config)


@pytest.mark.parametrize('size,g_features,d_features', [
    ('128', (512, 256, 128, 64, 32), (32, 64, 128, 256, 512)),
    ('64', (512, 256, 128, 64), (64, 128, 256, 512)),  # The PyTorch DCGAN example's widths.
])
def test_folder_config_takes_the_image_size_after_a_colon(size, g_features, d_features):
  config = importlib.import_module('dcgan_jax.configs.folder').get_config(size)
  assert config.data.image_size == int(size) and models.output_size(config) == int(size)
  assert tuple(config.model.g_features) == g_features and tuple(config.model.d_features) == d_features
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


def test_inception_weights_must_be_an_existing_file_or_empty(tmp_path):
  config = default.get_config()
  config.eval_inception_weights = str(tmp_path / 'absent.npz')
  with pytest.raises(errors.ConfigError, match=r"config.eval_inception_weights='.*absent.npz': no such file; pass "
                                               r"pytorch-fid's pt_inception-2015-12-05-6726825d.pth"):
    config_validation.validate(config)
  (tmp_path / 'absent.npz').write_bytes(b'')  # Its content is checked when the run loads it.
  config_validation.validate(config)
