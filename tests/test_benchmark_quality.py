"""benchmarks/quality.py compares like with like: every variant reads the same batches, and the initialisations it
substitutes draw from exactly the documented ranges."""

import math

import jax
import numpy as np
import pytest

from benchmarks import harness
from benchmarks import quality
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.configs import mnist


def test_batch_order_is_one_permutation_per_epoch_without_the_partial_batch():
  order = quality.batch_order(10, 4, seed=3, epochs=2)
  assert order.shape == (4, 4)  # 2 full batches per epoch, the last 2 images of each epoch dropped.
  for epoch in range(2):
    seen = order[2 * epoch:2 * epoch + 2].ravel()
    assert len(set(seen.tolist())) == 8 and seen.min() >= 0 and seen.max() <= 9
  np.testing.assert_array_equal(order, quality.batch_order(10, 4, seed=3, epochs=2))
  assert not np.array_equal(order[:2], order[2:])


@pytest.fixture(scope='module')
def mnist_state():
  return train_state.create_train_state(mnist.get_config(), jax.random.key(0))


def test_uniform_fan_in_init_redraws_kernels_only(mnist_state):
  g = quality.uniform_fan_in_init(mnist_state.g_params, jax.random.key(1))
  kernel = np.asarray(g['ConvTranspose_0']['kernel'])  # flax's fan-in: 7 * 7 * 100.
  assert np.abs(kernel).max() <= 1 / math.sqrt(4900) and np.abs(kernel).max() > 0.95 / math.sqrt(4900)
  np.testing.assert_array_equal(g['ConvTranspose_2']['bias'], mnist_state.g_params['ConvTranspose_2']['bias'])


def test_unknown_variant_is_one_usage_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    quality.main(['--variants', 'ours,tf'])
  assert exit_info.value.code == 2
  assert ('unknown --variants tf; choose from ours, ours_ema, ours_flax_init, ours_pytorch_init, ours_pytorch_init_g, '
          'ours_pytorch_init_flax_output, ours_flax_init_pytorch_output, ours_uniform_init, ours_spectral_norm, '
          'torch' in capsys.readouterr().err)


_G, _OUT, _D = 'model.generator.weight_init', 'model.generator.output_weight_init', 'model.discriminator.weight_init'


@pytest.mark.parametrize('variant,changed', [
    ('ours', {}),
    ('ours_ema', {'ema_decay': 0.999}),
    ('ours_flax_init', {_G: 'flax', _OUT: '', _D: 'flax'}),
    ('ours_pytorch_init', {_G: 'pytorch', _OUT: '', _D: 'pytorch'}),
    ('ours_pytorch_init_g', {_G: 'pytorch', _OUT: '', _D: 'flax'}),
    ('ours_pytorch_init_flax_output', {_G: 'pytorch', _OUT: 'flax', _D: 'pytorch'}),
    ('ours_flax_init_pytorch_output', {_G: 'flax', _OUT: 'pytorch', _D: 'flax'}),
    ('ours_spectral_norm', {'model.discriminator.spectral_norm': True}),
])
def test_each_variant_is_configs_mnist_with_what_it_names_changed(variant, changed):
  expected = mnist.get_config()
  expected.seed = 7
  assert quality.variant_config(variant, 7).to_dict() == harness.set_fields(expected, changed).to_dict()


def test_a_redrawn_initialisation_still_trains_at_the_configs_learning_rates():
  config = mnist.get_config()
  config.batch_size = 4
  state = quality.initial_state(config, quality.uniform_fan_in_init)
  for opt_state in (state.g_opt_state, state.d_opt_state):
    assert float(opt_state.hyperparams['learning_rate']) == pytest.approx(2e-4)
  redrawn = np.asarray(state.g_params['ConvTranspose_2']['kernel'])
  assert not np.array_equal(redrawn, quality.initial_state(config).g_params['ConvTranspose_2']['kernel'])
  images = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1), minval=-1, maxval=1)
  new, _ = jax.jit(train.train_step)(state, {'image': images})
  # Adam's first update moves every weight with a gradient by about the learning rate.
  moved = np.abs(np.asarray(new.g_params['ConvTranspose_2']['kernel']) - redrawn)
  assert np.median(moved) == pytest.approx(2e-4, rel=0.05)


class _ScriptedEvaluator:
  """Scores in call order: the FIDs given, then whatever follows; records the sample counts it was given."""

  def __init__(self, fids):
    self.fids, self.sizes = list(fids), []

  def evaluate(self, images):
    self.sizes.append(images.shape[0])
    fid = self.fids.pop(0)
    return {'fid': fid, 'coverage': 10.0, 'precision': 0.5, 'recall': 0.5}


@pytest.mark.parametrize('variant', ['ours', 'torch'])
def test_the_best_epoch_is_picked_on_the_selection_samples_and_rescored_on_all(monkeypatch, variant):
  import conftest  # pylint: disable=g-import-not-at-top
  config = conftest.tiny_config()
  monkeypatch.setattr(quality, 'variant_config', lambda variant, seed: config)
  monkeypatch.setattr(quality, 'SELECT_SAMPLES', 12)
  images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1)).astype(np.uint8)
  # Three epochs of 2 steps: selection FIDs 30, 20, 25 -> epoch 2; then the last epoch's and epoch 2's full scores.
  evaluator = _ScriptedEvaluator([30.0, 20.0, 25.0, 26.0, 21.0])
  result = quality.run_variant(variant, 0, 3, 20, images, evaluator)
  assert evaluator.sizes == [12, 12, 12, 20, 20]
  assert (result['fid'], result['best_epoch'], result['best_fid'], result['steps']) == (26.0, 2.0, 21.0, 6.0)
