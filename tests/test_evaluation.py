"""The Evaluator: real images scored as if generated give a zero FID, full precision and recall and no KL; bad
generated samples are flagged; NaN samples do not crash it."""

import gzip
import math
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
from dcgan_jax.eval import classifier
from dcgan_jax import errors
from dcgan_jax.eval import evaluation
from dcgan_jax.data import input_pipeline


@pytest.fixture(scope='module')
def variables():
  # Untrained weights are still a fixed feature map, which is all these properties need.
  return jax.jit(classifier.CNN(10).init)(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))


@pytest.fixture(scope='module')
def real():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (60, 28, 28, 1)).astype(np.uint8)
  images[:, 5:20, 5:20] = 255  # Some structure shared by all, so the features are not pure noise.
  return images


def test_real_images_scored_as_generated(variables, real):
  evaluator = evaluation.Evaluator(variables, real, None, data_range=(-1.0, 1.0))
  scores = evaluator.evaluate(input_pipeline.to_float(real, (-1.0, 1.0)))
  assert tuple(scores) == evaluation.KEYS
  assert all(isinstance(v, float) for v in scores.values())
  assert scores['fid'] == pytest.approx(0.0, abs=1e-3)
  assert scores['precision'] == 1.0 and scores['recall'] == 1.0
  assert scores['kl'] == pytest.approx(0.0, abs=1e-9)
  assert scores['gen_mean'] == pytest.approx(scores['real_mean'], abs=1e-6)
  assert scores['gen_std'] == pytest.approx(scores['real_std'], abs=1e-6)
  expected_mean = float(np.mean(real / 255.0 * 2.0 - 1.0))
  assert scores['real_mean'] == pytest.approx(expected_mean, abs=1e-6)


def test_data_range_zero_one_and_true_labels(variables, real):
  labels = classifier.predict_and_features(variables, real)[0]
  evaluator = evaluation.Evaluator(variables, real, labels, num_classes=10, data_range=(0.0, 1.0))
  scores = evaluator.evaluate(input_pipeline.to_float(real, (0.0, 1.0)))
  assert scores['fid'] == pytest.approx(0.0, abs=1e-3)
  assert scores['kl'] == pytest.approx(0.0, abs=1e-9)
  assert scores['coverage'] == float(np.sum(np.bincount(labels, minlength=10) >= 0.01 * len(labels)))
  assert scores['real_mean'] == pytest.approx(float(np.mean(real / 255.0)), abs=1e-6)


def test_constant_images_score_badly(variables, real):
  evaluator = evaluation.Evaluator(variables, real, None, max_real=40)
  assert evaluator.num_real == 40
  scores = evaluator.evaluate(np.zeros((40, 28, 28, 1), np.float32))
  assert scores['fid'] > 1.0 and scores['recall'] == 0.0 and scores['coverage'] == 1.0
  assert scores['gen_mean'] == 0.0 and scores['gen_std'] == 0.0


def test_non_finite_samples_give_nan_metrics(variables, real):
  evaluator = evaluation.Evaluator(variables, real, None)
  generated = np.zeros((8, 28, 28, 1), np.float32)
  generated[3, 0, 0, 0] = np.nan
  scores = evaluator.evaluate(generated)
  assert math.isnan(scores['fid']) and math.isnan(scores['gen_mean'])
  assert scores['real_mean'] == evaluator.real_pixels['mean']
  with pytest.raises(ValueError, match='M > 3'):
    evaluator.evaluate(np.zeros((3, 28, 28, 1), np.float32))


def _write_idx(path, array):
  header = struct.pack('>BBBB', 0, 0, 8, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_build_evaluator_reads_labels_and_caches_the_classifier(variables, real, tmp_path, monkeypatch):
  _write_idx(tmp_path / 'train-images-idx3-ubyte.gz', real[..., 0])
  _write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.arange(60) % 10)
  config = conftest.tiny_config()
  config.data.source, config.data.path = 'idx', str(tmp_path)
  config.model.generator.output_activation = 'sigmoid'
  trained_on = []
  monkeypatch.setattr(classifier, 'train_classifier',
                      lambda images, labels, **kw: trained_on.append(labels) or (variables, 0.5, []))
  evaluator = evaluation.build_evaluator(config, real, str(tmp_path / 'cache'))
  np.testing.assert_array_equal(trained_on[0], np.arange(60) % 10)
  assert (tmp_path / 'cache' / f'classifier_idx_{tmp_path.name}.msgpack').exists()
  assert evaluator.data_range == (0.0, 1.0) and evaluator.num_classes == 10
  np.testing.assert_array_equal(evaluator.real_hist, [6] * 10)
  with pytest.raises(errors.DataError, match='60 images but 10 labels'):
    _write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', np.arange(10))
    evaluation.build_evaluator(config, real, str(tmp_path / 'cache'))
