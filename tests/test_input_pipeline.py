"""Tests for dcgan_jax.data.input_pipeline: IDX reading, split lookup, TFDS loading, scaling and batching."""

import gzip
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dcgan_jax import errors
from dcgan_jax.data import input_pipeline


def _idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
  """An IDX file's bytes, built by hand from the format so the test does not reuse the reader's logic."""
  header = bytes([0, 0, dtype_code, array.ndim]) + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def _write(path: pathlib.Path, data: bytes, compress: bool = False) -> str:
  path.write_bytes(gzip.compress(data) if compress else data)
  return str(path)


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(source='tfds', name='mnist', split='train', path='', data_dir=''))
  config.update(overrides)
  return config


# read_idx


@pytest.mark.parametrize('compress', [False, True])
def test_read_idx_round_trip(tmp_path, compress):
  images = np.random.default_rng(0).integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
  name = 'x-images-idx3-ubyte' + ('.gz' if compress else '')
  result = input_pipeline.read_idx(_write(tmp_path / name, _idx_bytes(images), compress))
  assert result.dtype == np.uint8
  np.testing.assert_array_equal(result, images)
  result[0, 0, 0] = 7  # An ordinary writable array, not a view of the file's bytes.


def test_read_idx_wrong_magic_names_path(tmp_path):
  path = _write(tmp_path / 'photo.png', b'\x89PNG\r\n\x1a\n' + bytes(100))
  with pytest.raises(errors.DataError, match='not an IDX file') as info:
    input_pipeline.read_idx(path)
  assert path in str(info.value)
  assert '\n' not in str(info.value)


def test_read_idx_non_uint8_type(tmp_path):
  path = _write(tmp_path / 'f.idx', _idx_bytes(np.zeros((2, 2), np.uint8), dtype_code=0x0D))
  with pytest.raises(errors.DataError, match='float32') as info:
    input_pipeline.read_idx(path)
  assert path in str(info.value)


@pytest.mark.parametrize('compress', [False, True])
def test_read_idx_truncated_reports_sizes(tmp_path, compress):
  full = _idx_bytes(np.zeros((3, 4, 4), np.uint8))  # 16-byte header + 48 pixels = 64 bytes.
  path = _write(tmp_path / ('t.gz' if compress else 't'), full[:-10], compress)
  with pytest.raises(errors.DataError, match='truncated') as info:
    input_pipeline.read_idx(path)
  message = str(info.value)
  assert path in message and '64' in message and '54' in message


def test_read_idx_truncated_header(tmp_path):
  path = _write(tmp_path / 'h', bytes([0, 0, 8, 3, 0, 0]))
  with pytest.raises(errors.DataError, match='truncated') as info:
    input_pipeline.read_idx(path)
  assert path in str(info.value)


def test_read_idx_bad_gzip(tmp_path):
  data = gzip.compress(_idx_bytes(np.zeros((10, 10), np.uint8)))
  path = _write(tmp_path / 'cut-images-idx3-ubyte.gz', data[:len(data) // 2])
  with pytest.raises(errors.DataError, match='gzip') as info:
    input_pipeline.read_idx(path)
  assert path in str(info.value)


def test_read_idx_missing_file(tmp_path):
  path = str(tmp_path / 'absent')
  with pytest.raises(errors.DataError, match='cannot read') as info:
    input_pipeline.read_idx(path)
  assert path in str(info.value)


# find_idx_images


def test_find_idx_images_missing_dir(tmp_path):
  path = str(tmp_path / 'nowhere')
  with pytest.raises(errors.DataError, match='does not exist') as info:
    input_pipeline.find_idx_images(path, 'train')
  assert path in str(info.value) and 'train-images-idx3-ubyte' in str(info.value)


def test_find_idx_images_empty_dir(tmp_path):
  with pytest.raises(errors.DataError, match='is empty') as info:
    input_pipeline.find_idx_images(str(tmp_path), 'test')
  assert str(tmp_path) in str(info.value) and 't10k-images-idx3-ubyte' in str(info.value)


def test_find_idx_images_no_match_lists_patterns(tmp_path):
  (tmp_path / 'train-labels-idx1-ubyte.gz').write_bytes(b'')
  with pytest.raises(errors.DataError, match='no train images file') as info:
    input_pipeline.find_idx_images(str(tmp_path), 'train')
  message = str(info.value)
  assert str(tmp_path) in message
  assert '*train-images-idx3-ubyte.gz' in message and 'train-labels-idx1-ubyte.gz' in message
  assert '\n' not in message


@pytest.mark.parametrize('split,name', [
    ('train', 'train-images-idx3-ubyte.gz'),
    ('train', 'train-images-idx3-ubyte'),
    ('test', 't10k-images-idx3-ubyte.gz'),
    ('t10k', 't10k-images-idx3-ubyte'),
    ('test', 'emnist-letters-test-images-idx3-ubyte.gz'),
    ('train', 'emnist-letters-train-images-idx3-ubyte.gz'),
])
def test_find_idx_images_names(tmp_path, split, name):
  for other in ('train-labels-idx1-ubyte.gz', 't10k-labels-idx1-ubyte.gz', 'README'):
    (tmp_path / other).write_bytes(b'')
  (tmp_path / name).write_bytes(b'')
  assert input_pipeline.find_idx_images(str(tmp_path), split) == str(tmp_path / name)


def test_find_idx_images_train_does_not_take_test_file(tmp_path):
  (tmp_path / 't10k-images-idx3-ubyte.gz').write_bytes(b'')
  with pytest.raises(errors.DataError, match='no train images file'):
    input_pipeline.find_idx_images(str(tmp_path), 'train')


def test_find_idx_images_several_matches(tmp_path):
  for name in ('train-images-idx3-ubyte', 'train-images-idx3-ubyte.gz'):
    (tmp_path / name).write_bytes(b'')
  with pytest.raises(errors.DataError, match='more than one') as info:
    input_pipeline.find_idx_images(str(tmp_path), 'train')
  assert 'train-images-idx3-ubyte, train-images-idx3-ubyte.gz' in str(info.value)


def test_find_idx_images_bad_split(tmp_path):
  with pytest.raises(errors.DataError, match="'validation'"):
    input_pipeline.find_idx_images(str(tmp_path), 'validation')


# load_images


def test_load_images_idx_adds_channel(tmp_path):
  images = np.arange(6 * 5 * 4, dtype=np.uint8).reshape(6, 5, 4)
  _write(tmp_path / 'train-images-idx3-ubyte.gz', _idx_bytes(images), compress=True)
  result = input_pipeline.load_images(_data_config(source='idx', path=str(tmp_path), split='train'))
  assert result.shape == (6, 5, 4, 1) and result.dtype == np.uint8
  np.testing.assert_array_equal(result[..., 0], images)


def test_load_images_idx_empty_split(tmp_path):
  _write(tmp_path / 't10k-images-idx3-ubyte', _idx_bytes(np.zeros((0, 28, 28), np.uint8)))
  with pytest.raises(errors.DataError, match='no images') as info:
    input_pipeline.load_images(_data_config(source='idx', path=str(tmp_path), split='test'))
  assert str(tmp_path) in str(info.value)


def test_load_images_real_mnist_test_set_through_the_idx_source():
  from dcgan_jax.data import bundled  # pylint: disable=g-import-not-at-top
  images = input_pipeline.load_images(_data_config(source='idx', path=bundled.DIRECTORY, split='test'))
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  assert images.min() == 0 and images.max() == 255
  # MNIST digits are thin strokes on black: mean ~33, and most pixels are exactly 0.
  assert 25 < images.mean() < 45
  assert 0.7 < np.mean(images == 0) < 0.9


def test_load_images_unknown_source():
  with pytest.raises(errors.DataError, match='allowed values: auto, tfds, bundled, idx, folder'):
    input_pipeline.load_images(_data_config(source='csv'))


def test_load_images_tfds_mock():
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=5):
    images = input_pipeline.load_images(_data_config(name='mnist', split='train'))
  assert images.shape == (5, 28, 28, 1) and images.dtype == np.uint8


@pytest.mark.parametrize('name,shape', [('emnist/letters', (28, 28, 1)), ('rock_paper_scissors', (300, 300, 3))])
def test_load_images_tfds_mock_new_datasets_and_transpose(name, shape):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  with tfds.testing.mock_data(num_examples=2):
    images = input_pipeline.load_images(_data_config(name=name, split='train'))
    transposed = input_pipeline.load_images(_data_config(name=name, split='train', transpose=True))
  assert images.shape == (2,) + shape and images.dtype == np.uint8
  # TFDS's emnist stores the characters transposed, as the IDX files do; data.transpose swaps height and width.
  np.testing.assert_array_equal(transposed, images.transpose(0, 2, 1, 3))


def test_load_images_tfds_unknown_name():
  with pytest.raises(errors.DataError, match='no_such_dataset_xyz'):
    input_pipeline.load_images(_data_config(name='no_such_dataset_xyz'))


def _assert_offline_message(message: str, data_dir: str):
  assert 'not prepared' in message and data_dir in message and "'mnist'" in message
  assert '--config.data.source=idx --config.data.path=DIR --config.data.split=test' in message
  assert 'dataset-fashion-mnist' in message
  assert '\n' not in message


def test_load_images_tfds_unprepared_offline_is_fast(tmp_path, monkeypatch):
  # Stands in for a machine without network, so the test never downloads even where a network exists.
  monkeypatch.setattr(input_pipeline, '_download_server_reachable', lambda: False)
  start = time.monotonic()
  with pytest.raises(errors.DataError) as info:
    input_pipeline.load_images(_data_config(name='mnist', data_dir=str(tmp_path)))
  assert time.monotonic() - start < 10
  _assert_offline_message(str(info.value), str(tmp_path))


# to_float


@pytest.mark.parametrize('data_range', [(-1.0, 1.0), (0.0, 1.0)])
@pytest.mark.parametrize('as_jax', [False, True])
def test_to_float_endpoints(data_range, as_jax):
  pixels = np.array([0, 1, 128, 254, 255], np.uint8)
  images = jnp.asarray(pixels) if as_jax else pixels
  result = input_pipeline.to_float(images, data_range)
  assert isinstance(result, jax.Array) == as_jax
  assert result.dtype == np.float32
  result = np.asarray(result)
  lo, hi = data_range
  assert result[0] == lo and result[-1] == hi
  np.testing.assert_allclose(result, lo + (hi - lo) * pixels / 255.0, atol=1e-6)
  assert np.all(np.diff(result) > 0)


def test_to_float_under_jit():
  images = jnp.array([[0, 255]], jnp.uint8)
  np.testing.assert_array_equal(jax.jit(input_pipeline.to_float)(images), [[-1.0, 1.0]])


def test_to_float_rejects_float_input():
  with pytest.raises(TypeError, match='uint8'):
    input_pipeline.to_float(np.zeros(3, np.float32))


# EpochBatcher


def _indexed_images(n: int) -> np.ndarray:
  """Images whose first pixel is their index (n <= 256), so a batch reveals which images it holds."""
  images = np.zeros((n, 2, 2, 1), np.uint8)
  images[:, 0, 0, 0] = np.arange(n)
  return images


def _ids(batch: np.ndarray) -> list:
  return batch[:, 0, 0, 0].tolist()


def test_batcher_each_epoch_is_a_permutation():
  batcher = input_pipeline.EpochBatcher(_indexed_images(24), batch_size=6, seed=3)
  assert batcher.steps_per_epoch == 4
  epochs = []
  for epoch in range(3):
    seen = [i for step in range(4 * epoch, 4 * epoch + 4) for i in _ids(batcher.batch(step))]
    assert sorted(seen) == list(range(24))
    assert batcher.epoch(4 * epoch + 3) == epoch
    epochs.append(seen)
  assert epochs[0] != epochs[1] and epochs[1] != epochs[2]
  assert epochs[0] != list(range(24))  # Actually shuffled.


def test_batcher_drops_remainder():
  batcher = input_pipeline.EpochBatcher(_indexed_images(10), batch_size=4, seed=0)
  assert batcher.steps_per_epoch == 2
  seen = _ids(batcher.batch(0)) + _ids(batcher.batch(1))
  assert len(set(seen)) == 8
  assert batcher.batch(1).shape == (4, 2, 2, 1) and batcher.batch(1).dtype == np.uint8


def test_batcher_uses_the_documented_permutation():
  batcher = input_pipeline.EpochBatcher(_indexed_images(12), batch_size=4, seed=5)
  perm = np.random.default_rng([5, 2]).permutation(12)
  assert _ids(batcher.batch(2 * 3 + 1)) == perm[4:8].tolist()


def test_batcher_seed_determinism():
  images = _indexed_images(32)
  first = input_pipeline.EpochBatcher(images, 8, seed=1)
  again = input_pipeline.EpochBatcher(images, 8, seed=1)
  other = input_pipeline.EpochBatcher(images, 8, seed=2)
  steps = [0, 3, 4, 9, 2]  # Out of order, so the per-epoch cache is exercised.
  assert [_ids(first.batch(s)) for s in steps] == [_ids(again.batch(s)) for s in steps]
  assert [_ids(first.batch(s)) for s in steps] != [_ids(other.batch(s)) for s in steps]


def test_batcher_resume_matches_uninterrupted_run():
  images = _indexed_images(30)
  uninterrupted = input_pipeline.EpochBatcher(images, 7, seed=11)
  full = [_ids(uninterrupted.batch(step)) for step in range(20)]
  # A "restarted process": a fresh batcher, resuming in the middle of an epoch.
  restarted = input_pipeline.EpochBatcher(images, 7, seed=11)
  assert [_ids(restarted.batch(step)) for step in range(9, 20)] == full[9:]


def test_batcher_too_few_images():
  with pytest.raises(errors.DataError, match='has 3 images, fewer than the batch size 8') as info:
    input_pipeline.EpochBatcher(_indexed_images(3), batch_size=8, seed=0)
  assert '--config.batch_size' in str(info.value)
