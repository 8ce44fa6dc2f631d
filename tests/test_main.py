"""End to end: `train_and_evaluate` on mock MNIST writes its outputs and resumes exactly; `main.py` takes the
documented overrides and turns bad input into one clear line. The error cases run main.py's path in process
(`dcgan_jax.cli.train.parse_flags`, then `train`); two real runs of main.py check the exit status and the single
line on stderr."""

import glob
import shutil
import subprocess
import sys

from absl import logging as absl_logging
import chex
import pytest
import tensorflow_datasets as tfds

import conftest
from dcgan_jax import errors
from dcgan_jax.cli import train as train_cli
from dcgan_jax.trainer import loop


def _run_main(args, num_devices=1):
  return subprocess.run([sys.executable, 'main.py', *args], capture_output=True, text=True,
                        env=conftest.subprocess_env(num_devices), cwd=conftest.ROOT, timeout=300)


TINY_FLAGS = ['--config.latent_dim=8', '--config.model.generator.features=(8,4)',
              '--config.model.discriminator.features=(4,8)', '--config.num_samples=4', '--config.log_every_steps=1']


def test_train_and_evaluate_writes_outputs_and_resumes_exactly(tmp_path, tiny_run):
  # tiny_run: tiny_config() for one epoch of 32 mock images (batch 8: 4 steps).
  assert (tiny_run / 'samples' / 'step_0000004.png').exists()
  assert (tiny_run / 'checkpoints' / '4').is_dir()
  assert glob.glob(str(tiny_run / 'events.out.tfevents.*'))
  assert (tiny_run / 'config.json').exists()
  workdir = tmp_path / 'resumed'
  shutil.copytree(tiny_run, workdir)
  config = conftest.tiny_config()
  config.num_epochs = 2
  with tfds.testing.mock_data(num_examples=32):
    resumed = loop.train_and_evaluate(config, str(workdir))
    assert int(resumed.step) == 8
    assert (workdir / 'samples' / 'step_0000008.png').exists()
    straight = loop.train_and_evaluate(config, str(tmp_path / 'straight'))
  # Same data order, noise and optimizer state: bit-identical to the run never interrupted.
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats', 'g_opt_state', 'd_opt_state', 'rng'):
    chex.assert_trees_all_equal(getattr(resumed, field), getattr(straight, field))

  # Already done: a third run trains nothing and returns the saved state.
  with tfds.testing.mock_data(num_examples=32):
    again = loop.train_and_evaluate(config, str(workdir))
  assert int(again.step) == 8


def test_fused_steps_and_host_batching_train_like_single_device_resident_steps(tmp_path):
  """steps_per_call=3 (three steps traced into one call) and host-side batching reproduce the default path's
  parameters."""
  config = conftest.tiny_config()
  config.num_train_steps = 6
  results = {}
  with tfds.testing.mock_data(num_examples=32):
    for name, per_call, max_device_bytes in (('default', 1, 1 << 30), ('fused', 3, 1 << 30), ('host', 1, 0)):
      config.steps_per_call, config.data.max_device_bytes = per_call, max_device_bytes
      results[name] = loop.train_and_evaluate(config, str(tmp_path / name))
  for name in ('fused', 'host'):
    assert int(results[name].step) == 6
    chex.assert_trees_all_close(results[name].g_params, results['default'].g_params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(results[name].d_params, results['default'].d_params, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 16)


@pytest.mark.slow
def test_main_with_the_documented_idx_overrides(tmp_path, idx_dir):
  workdir = tmp_path / 'w'
  proc = _run_main(['--config=configs/mnist.py', f'--workdir={workdir}', '--config.data.source=idx',
                    f'--config.data.path={idx_dir}', '--config.data.split=test', '--config.num_epochs=1',
                    '--config.batch_size=8', '--config.seed=3', *TINY_FLAGS])
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (workdir / 'samples' / 'step_0000002.png').exists()
  assert (workdir / 'checkpoints' / '2').is_dir()
  assert 'step 2/2 epoch 1' in proc.stderr
  assert '"seed": 3' in (workdir / 'config.json').read_text()


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  error_lines = [l for l in proc.stderr.splitlines() if l.startswith('Error: ')]
  assert len(error_lines) == 1, proc.stderr[-3000:]
  message = proc.stderr[proc.stderr.index('Error: '):]
  for fragment in fragments:
    assert fragment in message, message


@pytest.fixture(autouse=True)
def _absl_state_restored():
  """Parsing main.py's flags in process sets absl's logging level from its flags; later tests read INFO logs."""
  absl_logger = absl_logging.get_absl_logger()
  level, python_level = absl_logging.get_verbosity(), absl_logger.level
  yield
  train_cli.FLAGS.unparse_flags()
  absl_logging.set_verbosity(level)
  absl_logger.setLevel(python_level)


def _error_in_process(args):
  """What main.py would print for `args` (its flags parsed, then training started, in this process)."""
  try:
    train_cli.parse_flags(['main.py', *args])
    train_cli.train()
  except SystemExit as e:
    return str(e.code)
  except errors.UserError as e:
    return f'Error: {e}'
  raise AssertionError(f'main.py {" ".join(args)} did not fail')


def _assert_error(message, *fragments, one_line=True):
  assert message.startswith('Error: ') and (not one_line or '\n' not in message), message
  for fragment in fragments:
    assert fragment in message, message


@pytest.mark.slow
def test_missing_idx_directory_is_one_line_naming_it(tmp_path):
  missing = tmp_path / 'nowhere'
  proc = _run_main(['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}', '--config.data.source=idx',
                    f'--config.data.path={missing}', '--config.data.split=test'])
  _assert_one_line_error(proc, str(missing))


def test_wrong_idx_magic_is_one_line_naming_the_file(tmp_path):
  (tmp_path / 'd').mkdir()
  bad = tmp_path / 'd' / 't10k-images-idx3-ubyte'
  bad.write_bytes(b'not an idx file at all, just text')
  message = _error_in_process(['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}',
                               '--config.data.source=idx', f'--config.data.path={tmp_path / "d"}',
                               '--config.data.split=test'])
  _assert_error(message, str(bad))


def test_invalid_config_values_are_listed_by_field(tmp_path, idx_dir):
  message = _error_in_process(['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}',
                               '--config.loss=wasserstein', '--config.g_optimizer.learning_rate=-1',
                               '--config.data.image_size=32'])
  # One problem per line, all of them at once.
  _assert_error(message, 'config.loss', 'non_saturating', 'config.g_optimizer.learning_rate',
                'config.data.image_size=32', one_line=False)
  assert len(message.splitlines()) == 4, message


def test_misspelled_override_is_one_line_suggesting_the_field(tmp_path):
  message = _error_in_process(['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}', '--config.lossy=hinge'])
  _assert_error(message, "no field 'lossy'", 'Did you mean "loss"')


def test_another_familys_field_on_the_command_line_is_one_line_naming_the_rule(tmp_path):
  message = _error_in_process(['--config=configs/mnist_mlp.py', f'--workdir={tmp_path / "w"}',
                               '--config.model.generator.kernel_size=3'])
  _assert_error(message, "no field 'kernel_size' in this config's generator family",
                'start from a config of that family', 'docs/configuration.md')


@pytest.mark.slow
def test_batch_not_divisible_by_devices_names_both_numbers(tmp_path, idx_dir):
  proc = _run_main(['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}', '--config.data.source=idx',
                    f'--config.data.path={idx_dir}', '--config.data.split=test', '--config.batch_size=7'],
                   num_devices=2)
  _assert_one_line_error(proc, 'config.batch_size=7', '2 devices')


def test_checkpoint_of_another_model_is_refused_with_the_differences(tmp_path, idx_dir):
  common = ['--config=configs/mnist.py', f'--workdir={tmp_path / "w"}', '--config.data.source=idx',
            f'--config.data.path={idx_dir}', '--config.data.split=test', '--config.num_epochs=1',
            '--config.batch_size=8', *TINY_FLAGS]
  train_cli.parse_flags(['main.py', *common])
  train_cli.train()
  message = _error_in_process(common + ['--config.model.discriminator.features=(4,16)'])
  _assert_error(message, 'another model', 'd_params/', 'new --workdir')


def test_bad_config_file_argument_is_one_line_naming_the_rule(tmp_path):
  message = _error_in_process(['--config=configs/folder.py:100', f'--workdir={tmp_path / "w"}'])
  _assert_error(message, 'configs/folder.py:100', 'must be 4 times a power of two')
