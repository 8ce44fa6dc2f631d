"""The sampling command on a checkpoint of a tiny run: grids, raw arrays, interpolations, checkpoint choice, and
one-line errors for what a user can get wrong."""

import json
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import conftest
from dcgan_jax import errors
from dcgan_jax import sample
from dcgan_jax import train


@pytest.fixture
def workdir(tiny_run):
  """A tiny run of 4 steps (32 mock images, batch 8) with checkpoints at steps 2 and 4 (conftest's, shared)."""
  return tiny_run


def test_config_round_trips_through_json_with_tuples(workdir):
  config = sample.load_run_config(str(workdir))
  assert config.model.generator.features == (8, 4) and config.latent_dim == 8


def test_npy_samples_shape_range_and_determinism(workdir, tmp_path):
  out = tmp_path / 'a.npy'
  returned = sample.run(str(workdir), str(out), num=6, seed=3)
  images = np.load(out)
  assert images.shape == (6, 28, 28, 1) and images.dtype == np.float32
  assert images.min() >= -1.0 and images.max() <= 1.0  # tanh: models.data_range is (-1, 1).
  np.testing.assert_array_equal(images, returned)
  np.testing.assert_array_equal(sample.run(str(workdir), str(tmp_path / 'b.npy'), num=6, seed=3), images)
  assert not np.allclose(sample.run(str(workdir), str(tmp_path / 'c.npy'), num=6, seed=4), images)


def test_checkpoint_choice_and_batchnorm_switch(workdir, tmp_path):
  latest = sample.run(str(workdir), str(tmp_path / 'l.npy'), num=4)
  np.testing.assert_array_equal(sample.run(str(workdir), str(tmp_path / '4.npy'), checkpoint='4', num=4), latest)
  assert not np.allclose(sample.run(str(workdir), str(tmp_path / '2.npy'), checkpoint='2', num=4), latest)
  running = sample.run(str(workdir), str(tmp_path / 'r.npy'), num=4, use_running_average=True)
  assert not np.allclose(running, latest)
  # --nouse_running_average forces what the tiny config already does (batch statistics).
  np.testing.assert_array_equal(
      sample.run(str(workdir), str(tmp_path / 'b.npy'), num=4, use_running_average=False), latest)


def test_best_checkpoint(workdir, tmp_path):
  with pytest.raises(errors.CheckpointError, match=r'no best checkpoint: .*checkpoints_best does not exist'):
    sample.run(str(workdir), str(tmp_path / 'x.npy'), checkpoint='best')
  best_run = tmp_path / 'run'
  shutil.copytree(workdir, best_run)
  shutil.copytree(best_run / 'checkpoints', best_run / 'checkpoints_best')
  shutil.rmtree(best_run / 'checkpoints_best' / '4')  # The best was step 2.
  np.testing.assert_array_equal(sample.run(str(best_run), str(tmp_path / 'best.npy'), checkpoint='best', num=4),
                                sample.run(str(best_run), str(tmp_path / '2.npy'), checkpoint='2', num=4))


def test_grid_png(workdir, tmp_path):
  out = tmp_path / 'grid.png'
  sample.run(str(workdir), str(out), num=4)
  with Image.open(out) as image:
    assert image.size == (2 * 30 + 2, 2 * 30 + 2) and image.mode == 'L'  # 2x2 tiles of 28 + 2 padding.


def test_interpolation_rows(workdir, tmp_path):
  z = sample.interpolation_noise(jax.random.key(0), rows=2, steps=3, latent_dim=5, noise='uniform')
  assert z.shape == (6, 5)
  np.testing.assert_allclose(z[1], (z[0] + z[2]) / 2, atol=1e-6)
  np.testing.assert_allclose(z[4], (z[3] + z[5]) / 2, atol=1e-6)
  out = tmp_path / 'interp.png'
  # 7 // 4 = one row of 4 (4 images, like the other tests: no new compilation), laid out as a row, not 2x2.
  images = sample.run(str(workdir), str(out), num=7, interpolate=True, steps=4)
  assert images.shape == (4, 28, 28, 1)
  with Image.open(out) as image:
    assert image.size == (4 * 30 + 2, 30 + 2)


def test_user_errors(workdir, tmp_path):
  with pytest.raises(errors.CheckpointError, match='does not exist'):
    sample.run(str(tmp_path / 'nowhere'), str(tmp_path / 'x.png'))
  with pytest.raises(errors.CheckpointError, match='config.json is missing'):
    sample.run(str(tmp_path), str(tmp_path / 'x.png'))
  (tmp_path / 'config.json').write_text(json.dumps({'seed': 0}))
  with pytest.raises(errors.CheckpointError, match='no checkpoint in'):
    sample.run(str(tmp_path), str(tmp_path / 'x.png'))
  with pytest.raises(errors.CheckpointError, match='no checkpoint for step 7 .*available steps: 2, 4'):
    sample.run(str(workdir), str(tmp_path / 'x.png'), checkpoint='7')
  with pytest.raises(errors.ConfigError, match='best, latest or a step'):
    sample.run(str(workdir), str(tmp_path / 'x.png'), checkpoint='newest')
  with pytest.raises(errors.ConfigError, match=r'\.png .* or \.npy'):
    sample.run(str(workdir), str(tmp_path / 'x.jpg'))


@pytest.mark.slow
def test_command_line_error_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'dcgan_jax.cli.sample', f'--workdir={tmp_path / "nowhere"}'],
                          capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT,
                          timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1] == (
      f'Error: --workdir={tmp_path / "nowhere"} does not exist; pass the directory a training run wrote to')


def test_a_config_for_another_model_is_refused(workdir, tmp_path):
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  config = json.loads((run / 'config.json').read_text())
  config['model']['generator']['features'] = [16, 4]
  (run / 'config.json').write_text(json.dumps(config))
  with pytest.raises(errors.CheckpointError, match=r'written for another model.*g_params/'):
    sample.run(str(run), str(tmp_path / 'x.npy'))


def test_a_run_config_of_another_family_loads_as_saved(tmp_path):
  """The saved network sections replace the default's (an mlp run is not merged with the dcgan fields); fields a
  module gained since are filled with its default."""
  from dcgan_jax.configs import mnist_fnn  # pylint: disable=g-import-not-at-top
  saved = json.loads(mnist_fnn.get_config().to_json_best_effort())
  del saved['model']['discriminator']['dropout']  # As if the field were added after the run.
  (tmp_path / 'config.json').write_text(json.dumps(saved))
  config = sample.load_run_config(str(tmp_path))
  assert dict(config.model.generator) == {'family': 'mlp', 'features': (128,), 'leaky_slope': 0.2,
                                          'bn_momentum': 0.99, 'bn_epsilon': 1e-3, 'activation': 'relu',
                                          'output_activation': 'tanh', 'batchnorm': False}
  assert dict(config.model.discriminator) == {'family': 'mlp', 'features': (128,), 'leaky_slope': 0.2,
                                              'activation': 'relu', 'dropout': 0.0, 'spectral_norm': False}
  assert config.to_dict() == mnist_fnn.get_config().to_dict()


def test_a_run_config_with_the_flat_model_of_0_1_is_one_line(tmp_path):
  path = tmp_path / 'config.json'
  path.write_text(json.dumps({'seed': 0, 'model': {'name': 'dcgan', 'g_features': [256, 128]}}))
  with pytest.raises(errors.CheckpointError) as raised:
    sample.load_run_config(str(tmp_path))
  assert str(raised.value) == (
      f'{path} has a flat config.model (model.name, model.g_features, ...): the run was trained by dcgan_jax 0.1, '
      'whose checkpoints do not restore in this version; retrain it (its settings now live under '
      'config.model.generator and config.model.discriminator, see docs/configuration.md)')
  path.write_text(json.dumps({'model': {'generator': {'family': 'dcgan', 'features': [8], 'kernel_size': 3,
                                                      'start_size': 7, 'width': 2}}}))
  with pytest.raises(errors.CheckpointError, match=r'describes a model this version cannot build: '
                                                   r'config.model.generator.width: the dcgan generator'):
    sample.load_run_config(str(tmp_path))


def test_sampling_leaves_a_checkpoint_being_written_alone(workdir, tmp_path):
  """A run still training may be writing step 6 into a temporary directory: sampling reads step 4, deletes nothing."""
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  in_flight = run / 'checkpoints' / '6.orbax-checkpoint-tmp-123'
  in_flight.mkdir()
  np.testing.assert_array_equal(sample.run(str(run), str(tmp_path / 'a.npy'), num=4),
                                sample.run(str(workdir), str(tmp_path / 'b.npy'), num=4))
  assert in_flight.is_dir()


def test_load_returns_the_config_and_the_state_of_a_run(workdir):
  import dcgan_jax  # pylint: disable=g-import-not-at-top
  config, state = dcgan_jax.load(str(workdir))
  assert config.model.generator.features == (8, 4) and int(state.step) == 4
  _, second = dcgan_jax.load(str(workdir), checkpoint=2)
  assert int(second.step) == 2
  z = jax.numpy.zeros((2, config.latent_dim))
  np.testing.assert_array_equal(
      dcgan_jax.generate(state, z), dcgan_jax.generate(sample.restore_state(str(workdir), config, '4'), z))
  with pytest.raises(errors.CheckpointError, match=r'no checkpoint for step 3 .*available steps: 2, 4'):
    dcgan_jax.load(str(workdir), checkpoint=3)


def test_export_flag_writes_the_generator_in_the_run_sampling_mode(workdir, tmp_path):
  images = sample.run(str(workdir), str(tmp_path / 'a.npy'), num=4, export=str(tmp_path / 'g.jax'))
  exported = jax.export.deserialize(bytearray((tmp_path / 'g.jax').read_bytes()))
  z = train.sample_noise(jax.random.key(0), (4, 8), 'uniform')  # What sample.run drew for seed 0.
  np.testing.assert_allclose(exported.call(z), images, rtol=1e-5, atol=1e-6)
