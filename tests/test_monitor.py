"""Evaluation in training: scores, the best checkpoint, the collapse alarm and the summary pictures."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

import conftest
from dcgan_jax.trainer import loop
from dcgan_jax.trainer import monitor as monitor_lib
from dcgan_jax import sample


def test_a_run_with_evaluation_keeps_the_best_checkpoint_and_writes_its_summary(tmp_path):
  config = conftest.tiny_config()
  config.num_train_steps = 6
  config.batch_size = 64  # 200 images: 3 steps per epoch.
  config.eval_every_steps = 1000  # Longer than an epoch: evaluated every epoch instead, so short runs draw curves.
  config.eval_num_samples = 16
  config.eval_classifier_steps = 5
  config.eval_cache_dir = str(tmp_path / 'cache')
  config.annotate_samples = True
  workdir = tmp_path / 'run'
  with tfds.testing.mock_data(num_examples=200):  # The classifier holds out 20% and wants a batch of 128.
    loop.train_and_evaluate(config, str(workdir))
  history = json.loads((workdir / 'history.json').read_text())
  assert [step for step, _ in history['fid']] == [0, 3, 6]
  assert [step for step, _ in history['d_loss']] == [2, 4, 6]
  best = json.loads((workdir / 'best.json').read_text())
  assert best['fid'] == pytest.approx(min(v for _, v in history['fid']), rel=1e-6)
  assert [p.name for p in (workdir / 'checkpoints_best').iterdir() if p.name.isdigit()] == [str(best['step'])]
  for name in ('progress.gif', 'curves.png', 'real_vs_fake.png', 'samples/scored_0000006.png'):
    assert (workdir / name).exists(), name
  # The sample CLI renders the best checkpoint.
  out = tmp_path / 'best.npy'
  sample.run(str(workdir), str(out), checkpoint='best', num=4)
  assert np.load(out).shape == (4, 28, 28, 1)


class _Writer:

  def write_scalars(self, step, scalars):
    del step, scalars


def _alarm_monitor(patience=2):
  config = conftest.tiny_config()  # eval off: no classifier; _alarms is tested on hand-made scores.
  config.collapse_patience = patience
  return monitor_lib.Monitor(config, '/nonexistent', np.zeros((1, 28, 28, 1), np.uint8), None, None, _Writer())


def test_alarm_when_coverage_falls_by_three_classes_from_its_best():
  m = _alarm_monitor()
  assert m._alarms({'coverage': 10}) == []  # pylint: disable=protected-access
  assert m._alarms({'coverage': 8}) == []  # pylint: disable=protected-access
  alarms = m._alarms({'coverage': 7})  # pylint: disable=protected-access
  assert len(alarms) == 1 and '7 classes from 10' in alarms[0]


def test_alarm_when_d_of_g_z_stays_low_for_the_patience():
  m = _alarm_monitor(patience=2)
  m._last_means = {'d_fake': 0.01}  # pylint: disable=protected-access
  assert m._alarms({'coverage': 10}) == []  # pylint: disable=protected-access
  assert 'D(G(z))' in m._alarms({'coverage': 10})[0]  # pylint: disable=protected-access
  m._last_means = {'d_fake': 0.3}  # pylint: disable=protected-access
  assert m._alarms({'coverage': 10}) == []  # pylint: disable=protected-access


def test_monitor_command_takes_exactly_one_workdir():
  from dcgan_jax.cli import monitor as monitor_cli  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit, match=r'^usage: python -m dcgan_jax.cli.monitor WORKDIR$'):
    monitor_cli.run(['dcgan-monitor'])


def test_the_d_of_g_z_alarm_works_without_a_classifier():
  # Runs scored only by Inception have no coverage; the discriminator alarm still fires.
  m = _alarm_monitor(patience=1)
  m._last_means = {'d_fake': 0.01}  # pylint: disable=protected-access
  alarms = m._alarms({'inception_fid': 50.0})  # pylint: disable=protected-access
  assert len(alarms) == 1 and 'D(G(z)) has stayed under 0.05 for 1 evaluations' in alarms[0]
