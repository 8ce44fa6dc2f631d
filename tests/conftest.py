"""Shared test fixtures: a tiny DCGAN config (compiles in seconds), the repository paths, and JAX's persistent
compilation cache, shared by the tests and the python processes they start (`subprocess_env`)."""

import gzip
import os
import pathlib
import struct
import sys

import numpy as np

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
  sys.path.insert(0, str(ROOT))

from dcgan_jax.configs import default  # pylint: disable=g-import-not-at-top,wrong-import-position

# Compiled programs are cached on disk and reused by later tests and child processes (the same tiny networks are
# compiled by many tests). DCGAN_JAX_TEST_CACHE moves it; the directory is ignored by git.
COMPILATION_CACHE = os.environ.get('DCGAN_JAX_TEST_CACHE', str(ROOT / '.jax_cache'))
_CACHE_SETTINGS = {'jax_compilation_cache_dir': COMPILATION_CACHE, 'jax_persistent_cache_min_compile_time_secs': 0}


def pytest_configure(config):
  del config
  import jax  # pylint: disable=g-import-not-at-top
  for name, value in _CACHE_SETTINGS.items():
    jax.config.update(name, value)


def tiny_config():
  """The MNIST DCGAN layout (28x28x1, 7 -> 14 -> 28) with a few channels, batch 8."""
  config = default.get_config()
  config.latent_dim = 8
  config.batch_size = 8
  config.model.generator.features = (8, 4)
  config.model.discriminator.features = (4, 8)
  config.num_samples = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = -1  # The feature classifier is tested on its own (tests/test_monitor.py).
  return config


@pytest.fixture
def config():
  return tiny_config()


@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
  """One finished tiny run shared by the sample, monitor and resume tests (read it; copy it before changing it):
  `tiny_config()` for one epoch of 32 mock images (batch 8: 4 steps), checkpoints at steps 2 and 4."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from dcgan_jax.trainer import loop  # pylint: disable=g-import-not-at-top
  path = tmp_path_factory.mktemp('tiny_run')
  config = tiny_config()
  config.num_epochs = 1
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(path))
  return path


def subprocess_env(num_devices: int = 1) -> dict:
  """Environment for a child python: the repo importable, N host CPU devices, TF quiet."""
  env = dict(os.environ)
  env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices}'
  env['TF_CPP_MIN_LOG_LEVEL'] = '3'
  env['JAX_PLATFORMS'] = 'cpu'
  env.update({name.upper(): str(value) for name, value in _CACHE_SETTINGS.items()})
  return env


def write_idx_images(directory, num_images: int, seed: int = 0) -> pathlib.Path:
  """Writes `num_images` random 28x28 digits as `directory/t10k-images-idx3-ubyte.gz` (the idx source's test split)."""
  images = np.random.default_rng(seed).integers(0, 256, (num_images, 28, 28), dtype=np.uint8)
  with gzip.open(pathlib.Path(directory) / 't10k-images-idx3-ubyte.gz', 'wb') as f:
    f.write(struct.pack('>BBBBIII', 0, 0, 8, 3, *images.shape) + images.tobytes())
  return pathlib.Path(directory)


def sgd_state_and_images():
  """The tiny model with plain SGD for both networks, and a fixed uint8 batch [8, 28, 28, 1].

  SGD makes the update proportional to the gradient, so a wrong gradient scale (e.g. across devices) cannot hide
  behind Adam's normalization.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from dcgan_jax import train_state  # pylint: disable=g-import-not-at-top
  state = train_state.create_train_state(tiny_config(), jax.random.key(0))
  sgd = optax.sgd(0.05)
  state = state.replace(g_tx=sgd, d_tx=sgd, g_opt_state=sgd.init(state.g_params),
                        d_opt_state=sgd.init(state.d_params))
  images = np.asarray(jax.random.randint(jax.random.key(1), (8, 28, 28, 1), 0, 256), np.uint8)
  return state, images
