"""Every config in configs/ trains end to end through `train_and_evaluate`: its own architecture, data range and
schedule, on `tfds.testing.mock_data` (TFDS configs) or a generated folder of images (folder configs).

Only the batch size and the number of steps are shrunk; networks are the configs' full-size ones.
"""

import importlib

import chex
import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import conftest
from dcgan_jax.trainer import loop
from test_configs import CONFIG_NAMES


def _folder(path, size, count=6):
  rng = np.random.default_rng(0)
  path.mkdir()
  for i in range(count):
    Image.fromarray(rng.integers(0, 256, (size + 8, size, 3), dtype=np.uint8)).save(path / f'{i}.png')
  return path


@pytest.mark.slow
@pytest.mark.parametrize('name', [n for n in CONFIG_NAMES if n != 'default'])
def test_config_trains_a_few_steps_end_to_end(name, tmp_path):
  config = importlib.import_module(f'dcgan_jax.configs.{name}').get_config()
  config.batch_size = 2
  config.num_samples = 4
  config.log_every_steps = 1
  config.eval_every_steps = -1  # The classifier-based evaluation has its own tests.
  # 6 images, batch 2: 3 batches per epoch; epoch_blocks' 4 steps are 3 G-only steps and 1 D-only step.
  schedule_steps = {'alternating': 2, 'epoch_blocks': 4, 'adaptive': 3}
  config.num_train_steps = schedule_steps[config.schedule]
  if config.data.source == 'folder':
    config.data.path = str(_folder(tmp_path / 'images', config.data.image_size))
  with tfds.testing.mock_data(num_examples=6):
    if config.num_classes and config.data.source != 'folder':
      # Mock examples draw labels over the TFDS feature's whole declared range (emnist/letters declares 37 classes;
      # the real letters are 1..26), which the config's num_classes rightly refuses.
      config.num_classes = tfds.builder(config.data.name).info.features['label'].num_classes
    state = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  assert int(state.step) == config.num_train_steps
  # alternating: one D and one G update per step; epoch_blocks: 3 G-only steps, then 1 D-only step; adaptive: one
  # update per step, whichever side's turn it is.
  updates = (int(state.d_updates), int(state.g_updates))
  if config.schedule == 'adaptive':
    assert sum(updates) == config.num_train_steps
  else:
    assert updates == {'alternating': (2, 2), 'epoch_blocks': (1, 3)}[config.schedule]
  samples = sorted((tmp_path / 'run' / 'samples').glob('step_*.png'))
  assert samples, 'no sample grid written'
  grid = np.asarray(Image.open(samples[-1]))
  assert grid.std() > 0  # Not a blank image.
  for leaf in (state.g_params, state.d_params):
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(leaf))


def test_a_streamed_folder_trains_exactly_like_the_in_memory_one(tmp_path):
  """max_host_bytes below the folder's size: batches decoded from the files per call, bit-identical training (with
  epoch_blocks, whose G-only steps get zero rows instead of decoded images)."""
  folder = tmp_path / 'digits'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(20):
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(folder / f'{i:02d}.png')
  config = conftest.tiny_config()
  config.data.source, config.data.path = 'folder', str(folder)
  config.schedule, config.num_train_steps = 'epoch_blocks', 4  # 20 images, batch 8: 2 G-only, then 2 D-only steps.
  results = {}
  for name, max_host_bytes in (('memory', 0), ('streamed', 1)):
    config.data.max_host_bytes = max_host_bytes
    results[name] = loop.train_and_evaluate(config, str(tmp_path / name))
  assert (int(results['streamed'].g_updates), int(results['streamed'].d_updates)) == (2, 2)
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats'):
    chex.assert_trees_all_equal(getattr(results['memory'], field), getattr(results['streamed'], field))
