"""The feature classifier: IDX and TFDS labels, training on easy synthetic digits, features and predictions, the
parameter cache, and the command line."""

import gzip
import os
import struct
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import conftest
from dcgan_jax.eval import classifier
from dcgan_jax import errors
from dcgan_jax.data import input_pipeline


def _write_idx(path, array):
  """An IDX file of uint8 `array` (any rank): magic 0, 0, 0x08, rank; one big-endian uint32 per dimension."""
  header = struct.pack('>BBBB', 0, 0, 8, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  opener = gzip.open if str(path).endswith('.gz') else open
  with opener(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _two_class_images(n, seed):
  """Class 0: a bright 8x8 square top-left; class 1: bottom-right; dim noise elsewhere. uint8 [n, 28, 28, 1]."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n)
  images = rng.integers(0, 60, (n, 28, 28, 1))
  for i, label in enumerate(labels):
    y = 2 if label == 0 else 18
    images[i, y:y + 8, y:y + 8] = 255
  return images.astype(np.uint8), labels.astype(np.int32)


@pytest.fixture(scope='module')
def trained():
  images, labels = _two_class_images(240, seed=0)
  return classifier.train_classifier(images, labels, seed=0, steps=24, batch_size=32, num_classes=2)


def _data_config(**kwargs):
  config = ml_collections.ConfigDict({'source': 'idx', 'name': 'mnist', 'split': 'train', 'path': '',
                                      'data_dir': ''})
  config.update(kwargs)
  return config


def test_read_idx_labels_raw_and_gzip(tmp_path):
  labels = np.array([7, 2, 1, 0, 9], np.uint8)
  for name in ('l-labels-idx1-ubyte', 'l-labels-idx1-ubyte.gz'):
    _write_idx(tmp_path / name, labels)
    read = classifier.read_idx_labels(str(tmp_path / name))
    np.testing.assert_array_equal(read, [7, 2, 1, 0, 9])
    assert read.dtype == np.int32


def test_read_idx_labels_refuses_an_images_file(tmp_path):
  _write_idx(tmp_path / 'x-images-idx3-ubyte', np.zeros((2, 3, 3)))
  with pytest.raises(errors.DataError, match='labels-idx1-ubyte'):
    classifier.read_idx_labels(str(tmp_path / 'x-images-idx3-ubyte'))


def test_load_labels_from_the_idx_file_beside_the_images(tmp_path):
  _write_idx(tmp_path / 't10k-images-idx3-ubyte.gz', np.zeros((3, 28, 28)))
  _write_idx(tmp_path / 't10k-labels-idx1-ubyte.gz', np.array([4, 5, 6]))
  _write_idx(tmp_path / 'train-images-idx3-ubyte', np.zeros((2, 28, 28)))
  np.testing.assert_array_equal(classifier.load_labels(_data_config(path=str(tmp_path), split='test')), [4, 5, 6])
  with pytest.raises(errors.DataError, match=r'no labels file for train-images-idx3-ubyte .*train-labels-idx1-ubyte'):
    classifier.load_labels(_data_config(path=str(tmp_path), split='train'))


def test_load_labels_from_tfds_mock():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _data_config(source='tfds', name='mnist', split='train')
  with tfds.testing.mock_data(num_examples=6):
    labels = classifier.load_labels(config)
    images = input_pipeline.load_images(config)
  assert labels.shape == (6,) and images.shape[0] == 6
  assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < 10


def test_dataset_key():
  assert classifier.dataset_key(_data_config(source='tfds', name='fashion_mnist')) == 'tfds_fashion_mnist'
  assert classifier.dataset_key(_data_config(path='/usr/share/datasets/fashion-mnist/')) == 'idx_fashion-mnist'


def test_training_lowers_the_loss_and_separates_easy_classes(trained):
  variables, held_out, losses = trained
  # 240 images, 20% held out: 192 train, 6 steps per epoch, 24 steps = 4 epochs.
  assert len(losses) == 4
  assert losses[-1] < 0.5 * losses[0]
  assert held_out == 1.0


def test_features_and_predictions(trained):
  variables = trained[0]
  images, labels = _two_class_images(7, seed=1)  # 7: one padded batch.
  predicted, feats = classifier.predict_and_features(variables, images)
  assert feats.shape == (7, classifier.FEATURE_DIM) and feats.dtype == np.float32 and feats.min() >= 0
  np.testing.assert_array_equal(predicted, labels)
  # Float images in their data range give the same features as their uint8 pixels.
  unit = input_pipeline.to_float(images, (0.0, 1.0))
  np.testing.assert_allclose(classifier.predict_and_features(variables, unit, data_range=(0.0, 1.0))[1], feats,
                             rtol=1e-5, atol=1e-4)
  with pytest.raises(errors.DataError, match=r'\[N, 28, 28, 1\]'):
    classifier.predict_and_features(variables, np.zeros((2, 32, 32, 3), np.uint8))


def test_load_or_train_caches_and_reloads_identically(tmp_path, monkeypatch, trained):
  images, labels = _two_class_images(64, seed=2)
  calls = []

  def fake_train(images, labels, **kwargs):
    calls.append(kwargs)
    return trained

  monkeypatch.setattr(classifier, 'train_classifier', fake_train)
  first = classifier.load_or_train('tfds/mnist', images, labels, str(tmp_path), steps=3)
  assert calls == [{'steps': 3}]
  assert os.listdir(tmp_path) == ['classifier_tfds_mnist.msgpack']
  second = classifier.load_or_train('tfds/mnist', images, labels, str(tmp_path))
  assert len(calls) == 1  # Loaded, not trained.
  chex.assert_trees_all_equal(jax.device_get(first), second)
  np.testing.assert_array_equal(classifier.predict_and_features(second, images)[1],
                                classifier.predict_and_features(first, images)[1])
  assert classifier.load(str(tmp_path / 'classifier_tfds_mnist.msgpack'))[1] == 1.0


def test_a_cache_for_another_architecture_is_retrained(tmp_path, monkeypatch, trained):
  stale = jax.tree.map(lambda x: jnp.zeros(x.shape[:-1] + (x.shape[-1] + 1,)), trained[0])
  classifier.save(str(tmp_path / 'classifier_k.msgpack'), stale, 0.5)
  monkeypatch.setattr(classifier, 'train_classifier', lambda *a, **k: trained)
  variables = classifier.load_or_train('k', *_two_class_images(8, seed=3), str(tmp_path))
  chex.assert_trees_all_equal(jax.device_get(variables), jax.device_get(trained[0]))
  assert classifier.load(str(tmp_path / 'classifier_k.msgpack'))[1] == 1.0


@pytest.mark.slow
def test_command_line_prints_the_held_out_accuracy_and_writes_the_cache(tmp_path):
  images, labels = _two_class_images(40, seed=4)
  data = tmp_path / 'digits'
  data.mkdir()
  _write_idx(data / 'train-images-idx3-ubyte.gz', images[..., 0])
  _write_idx(data / 'train-labels-idx1-ubyte.gz', labels)
  result = subprocess.run(
      [sys.executable, '-m', 'dcgan_jax.cli.classifier', '--data_source=idx', f'--data_path={data}', '--split=train',
       f'--out={tmp_path / "cache"}', '--steps=2', '--batch_size=8'],
      capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT, timeout=120)
  assert result.returncode == 0, result.stderr
  assert 'held-out accuracy' in result.stdout and '8 held-out images of split train' in result.stdout
  assert (tmp_path / 'cache' / 'classifier_idx_digits.msgpack').exists()



def test_load_labels_refuses_a_source_without_labels():
  with pytest.raises(errors.DataError, match="source='folder' has no labels"):
    classifier.load_labels(_data_config(source='folder'))
