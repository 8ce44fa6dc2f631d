"""benchmarks/conditional.py: its variants are configs/mnist_conditional.py with one thing changed, and it scores
the recognition of every class asked for, at the last and at the best epoch."""

import numpy as np
import pytest

import conftest
from benchmarks import harness
from benchmarks import conditional
from dcgan_jax.configs import mnist_conditional


@pytest.mark.parametrize('variant,changed', [
    ('shipped', {}),
    ('no_class_loss', {'class_loss_weight': 0.0}),
    ('class_loss_0.5', {'class_loss_weight': 0.5}),
    ('class_loss_1', {'class_loss_weight': 1.0}),
    ('flax_init', {'model.discriminator.weight_init': 'flax'}),
    ('ema', {'ema_decay': 0.999}),
    ('pytorch_init', {'model.generator.weight_init': 'pytorch'}),
    ('conditional_batchnorm', {'model.generator.conditional_batchnorm': True}),
])
def test_each_variant_is_the_conditional_config_with_what_it_names_changed(variant, changed):
  expected = mnist_conditional.get_config()
  expected.seed = 3
  assert conditional.variant_config(variant, 3).to_dict() == harness.set_fields(expected, changed).to_dict()


class _Evaluator:
  """Scripted FIDs in call order; class_accuracy from the scripted predictions."""
  variables, data_range = None, (-1.0, 1.0)

  def __init__(self, fids):
    self.fids, self.calls = list(fids), []

  def evaluate(self, images, labels=None):
    self.calls.append((images.shape[0], None if labels is None else labels.copy()))
    return {'fid': self.fids.pop(0), 'class_accuracy': 0.5}


def test_the_worst_class_is_scored_for_the_last_and_the_best_epoch(monkeypatch):
  config = conftest.tiny_config()
  config.num_classes = 3
  config.class_loss_weight = 0.3
  monkeypatch.setattr(conditional, 'variant_config', lambda variant, seed: config)
  monkeypatch.setattr(conditional, 'PER_CLASS', 4)
  monkeypatch.setattr(conditional.quality, 'SELECT_SAMPLES', 9)

  def predict(variables, images, data_range):  # Recognises every image as class 1, but for the first one.
    del variables, data_range
    predicted = np.ones(images.shape[0], np.int32)
    predicted[0] = 0
    return predicted, None
  monkeypatch.setattr(conditional.classifier, 'predict_and_features', predict)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 28, 28, 1)).astype(np.uint8)
  labels = (np.arange(16) % 3).astype(np.int32)
  evaluator = _Evaluator([30.0, 20.0, 25.0, 26.0, 21.0])  # Epoch FIDs 30, 20, 25: the best is epoch 2.
  result = conditional.run_variant('shipped', 0, 3, images, labels, evaluator)
  assert [n for n, _ in evaluator.calls] == [9, 9, 9, 12, 12]
  np.testing.assert_array_equal(evaluator.calls[0][1], [0, 1, 2, 0, 1, 2, 0, 1, 2])  # The classes in turn.
  # Class 0 (4 asked): image 0 recognised as 0, the other three as 1 -> 0.25; class 2: 0.0, the worst.
  assert result == {'best_epoch': 2.0, 'last_fid': 26.0, 'last_accuracy': 0.5, 'last_worst': 0.0,
                    'last_worst_class': 2.0, 'best_fid': 21.0, 'best_accuracy': 0.5, 'best_worst': 0.0,
                    'best_worst_class': 2.0}


def test_unknown_variant_is_one_usage_line(capsys):
  with pytest.raises(SystemExit) as exit_info:
    conditional.main(['--variants', 'shipped,acgan'])
  assert exit_info.value.code == 2
  assert ('unknown --variants acgan; choose from shipped, no_class_loss, class_loss_0.5, class_loss_1, flax_init, '
          'ema, pytorch_init, conditional_batchnorm'
          in capsys.readouterr().err)


def test_time_steps_gives_one_row_per_variant_relative_to_the_first(monkeypatch):
  def tiny(variant, seed):
    del seed
    config = conftest.tiny_config()
    config.num_classes, config.class_loss_weight = 3, 0.3 if variant == 'shipped' else 0.0
    return config
  monkeypatch.setattr(conditional, 'variant_config', tiny)
  images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1)).astype(np.uint8)
  table = conditional.time_steps(['shipped', 'no_class_loss'], 1, images, (np.arange(16) % 3).astype(np.int32),
                                 steps=1).splitlines()
  assert table[0] == '| variant | ms/step (median) | vs shipped |'
  assert [row.split(' | ')[0] for row in table[2:]] == ['| shipped', '| no_class_loss']
  assert table[2].endswith('| 1.00x |')
