"""The bundled MNIST digits and the 'auto' data source: the README's train command works on an offline machine."""

import json
import logging
import pathlib
import re
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

import conftest
from dcgan_jax.data import bundled
from dcgan_jax.eval import classifier
from dcgan_jax import errors
from dcgan_jax.data import input_pipeline

# MNIST's test split: images per digit 0..9.
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

# Imported first by the child python (via PYTHONPATH): no connection leaves the machine.
_NO_NETWORK = '''
import socket
_connect = socket.socket.connect
def _local_only(self, address, *args):
  if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ('127.0.0.1', '::1', 'localhost'):
    raise OSError(101, 'Network is unreachable (no network in this test)')
  return _connect(self, address, *args)
socket.socket.connect = _local_only
'''


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(dict(source='auto', name='mnist', split='train', path='', data_dir=''))
  config.update(overrides)
  return config


def test_bundled_files_match_their_recorded_checksums():
  assert bundled.verify() == bundled.SHA256
  notes = (pathlib.Path(bundled.DIRECTORY).parent / 'README.md').read_text()
  assert all(digest in notes for digest in bundled.SHA256.values()) and 'CC BY-SA 3.0' in notes


def test_bundled_source_reads_the_10000_test_digits_and_their_labels():
  config = _data_config(source='bundled', split='train')  # The split is ignored: the copy is the test split.
  images = input_pipeline.load_images(config)
  assert images.shape == (10000, 28, 28, 1) and images.dtype == np.uint8
  assert int(images.sum(dtype=np.int64)) == 264923200
  labels = classifier.load_labels(_data_config(source='bundled', split='test'))
  np.testing.assert_array_equal(np.bincount(labels), MNIST_TEST_LABEL_COUNTS)
  np.testing.assert_array_equal(labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
  assert classifier.dataset_key(config) == 'bundled_mnist'


def test_bundled_source_of_another_dataset_is_one_line(tmp_path):
  with pytest.raises(errors.DataError, match="no copy of 'fashion_mnist'"):
    input_pipeline.load_images(_data_config(source='bundled', name='fashion_mnist'))


def test_auto_falls_back_to_the_bundled_digits_offline_saying_so(tmp_path, monkeypatch, caplog):
  monkeypatch.setattr(input_pipeline, '_download_server_reachable', lambda: False)
  config = _data_config(data_dir=str(tmp_path))
  with caplog.at_level(logging.WARNING):
    resolved = input_pipeline.resolve_source(config)
  assert (resolved.source, resolved.split, resolved.name) == ('bundled', 'test', 'mnist')
  assert config.source == 'auto'  # The caller's config is not changed.
  line = ' '.join(r.getMessage() for r in caplog.records)
  assert 'bundled MNIST test digits (10000 images' in line and '--config.data.source=tfds insists' in line


def test_auto_uses_tfds_when_the_dataset_is_prepared():
  with tfds.testing.mock_data(num_examples=3):
    resolved = input_pipeline.resolve_source(_data_config())
    images = input_pipeline.load_images(_data_config())
  assert resolved.source == 'tfds' and images.shape == (3, 28, 28, 1)


def test_auto_without_a_bundled_copy_keeps_the_tfds_error(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, '_download_server_reachable', lambda: False)
  with pytest.raises(input_pipeline.TfdsUnavailableError, match="'fashion_mnist'") as info:
    input_pipeline.resolve_source(_data_config(name='fashion_mnist', data_dir=str(tmp_path)))
  assert 'dataset-fashion-mnist' in str(info.value) and '\n' not in str(info.value)


def test_tfds_source_insists_on_tfds_and_names_the_bundled_alternative(tmp_path, monkeypatch):
  monkeypatch.setattr(input_pipeline, '_download_server_reachable', lambda: False)
  with pytest.raises(input_pipeline.TfdsUnavailableError) as info:
    input_pipeline.load_images(_data_config(source='tfds', data_dir=str(tmp_path)))
  assert '--config.data.source=auto trains on the MNIST digits that ship with dcgan_jax' in str(info.value)


def _readme_train_command() -> list[str]:
  readme = (conftest.ROOT / 'README.md').read_text()
  lines = re.findall(r'^python main\.py --config=configs/mnist\.py --workdir=\S+$', readme, re.MULTILINE)
  assert lines, 'the README has no plain train command'
  return lines[0].split()[1:]


@pytest.mark.slow
def test_readme_train_command_runs_offline(tmp_path):
  """The README's own command, a step limit added, with no network and no prepared TFDS data."""
  (tmp_path / 'sitecustomize.py').write_text(_NO_NETWORK)
  env = conftest.subprocess_env()
  env['PYTHONPATH'] = f'{tmp_path}:{env["PYTHONPATH"]}'
  env['TFDS_DATA_DIR'] = str(tmp_path / 'tfds')
  workdir = tmp_path / 'run'
  args = [a if not a.startswith('--workdir=') else f'--workdir={workdir}' for a in _readme_train_command()]
  proc = subprocess.run([sys.executable, *args, '--config.num_train_steps=3', '--config.batch_size=32',
                         '--config.eval_every_steps=-1'], capture_output=True, text=True, env=env,
                        cwd=conftest.ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'training on the bundled MNIST test digits (10000 images' in proc.stderr
  assert (workdir / 'checkpoints' / '3').is_dir() and (workdir / 'samples' / 'step_0000003.png').is_file()
  recorded = json.loads((workdir / 'config.json').read_text())['data']
  assert (recorded['source'], recorded['split']) == ('bundled', 'test')
