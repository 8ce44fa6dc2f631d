"""Never lose a run: kills, preemption, damaged checkpoints, NaNs and disk trouble (tiny models, real processes)."""

import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import pytest
import tensorflow_datasets as tfds

import conftest
from dcgan_jax.trainer import loop
from dcgan_jax.trainer import checkpointing
from dcgan_jax import errors
from dcgan_jax import losses
from dcgan_jax import train_state

TOTAL_STEPS = 80  # 64 images, batch 8: 8 steps per epoch, 10 epochs.


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 64)


def _args(workdir, idx_dir, *extra):
  return [sys.executable, 'main.py', '--config=configs/mnist.py', f'--workdir={workdir}',
          '--config.data.source=idx', f'--config.data.path={idx_dir}', '--config.data.split=test',
          '--config.batch_size=8', '--config.latent_dim=8', '--config.model.generator.features=(8,4)',
          '--config.model.discriminator.features=(4,8)', '--config.num_samples=4', '--config.log_every_steps=1',
          f'--config.num_train_steps={TOTAL_STEPS}', '--config.checkpoint_every_steps=10', *extra]


def _run(args):
  proc = subprocess.run(args, capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _start(args):
  return subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                          env=conftest.subprocess_env(), cwd=conftest.ROOT)


def _wait_for_step(proc, step):
  """Reads the child's log until it reports `step` (or later); returns the lines read."""
  lines = []
  for line in proc.stderr:
    lines.append(line)
    if f'/{TOTAL_STEPS} epoch' in line:
      done = int(line.split('step ')[1].split('/')[0])
      if done >= step:
        return lines
  raise AssertionError('child ended before step %d:\n%s' % (step, ''.join(lines[-30:])))


def _final_state(workdir):
  config = conftest.tiny_config()
  template = train_state.create_train_state(config, jax.random.key(0))
  return checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), 3).restore(template)


def _assert_same_training(a, b):
  assert int(a.step) == int(b.step) == TOTAL_STEPS
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats', 'g_opt_state', 'd_opt_state', 'rng'):
    chex.assert_trees_all_equal(getattr(a, field), getattr(b, field))


@pytest.fixture(scope='module')
def uninterrupted(idx_dir, tmp_path_factory):
  workdir = tmp_path_factory.mktemp('straight')
  _run(_args(workdir, idx_dir))
  return _final_state(workdir)


@pytest.mark.slow
def test_sigkill_between_checkpoints_then_restart_is_bit_identical(idx_dir, tmp_path, uninterrupted):
  proc = _start(_args(tmp_path, idx_dir))
  _wait_for_step(proc, 37)  # Between the checkpoints of steps 30 and 40.
  proc.kill()
  proc.wait()
  restarted = _run(_args(tmp_path, idx_dir))
  assert 'Resuming at step' in restarted.stderr, restarted.stderr[-2000:]
  _assert_same_training(_final_state(tmp_path), uninterrupted)


# Imported first by the child (via PYTHONPATH): the rename that commits checkpoint 20 (orbax renames its temporary
# directory when the write is complete) never happens; the child says so in a file and waits to be killed.
_STALL_COMMIT_OF_STEP_20 = """
import os, time
_rename = os.rename
def _stalled(src, dst, *args, **kwargs):
  if os.path.basename(os.fspath(dst)) == '20' and 'tmp' in os.path.basename(os.fspath(src)):
    open(os.environ['STALLED_MARKER'], 'w').close()
    time.sleep(3600)
  return _rename(src, dst, *args, **kwargs)
os.rename = _stalled
"""


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_never_leaves_a_half_checkpoint(idx_dir, tmp_path, uninterrupted):
  hook, marker, workdir = tmp_path / 'hook', tmp_path / 'stalled', tmp_path / 'run'
  hook.mkdir()
  (hook / 'sitecustomize.py').write_text(_STALL_COMMIT_OF_STEP_20)
  env = conftest.subprocess_env()
  env.update(PYTHONPATH=f'{hook}{os.pathsep}{env["PYTHONPATH"]}', STALLED_MARKER=str(marker))
  proc = subprocess.Popen(_args(workdir, idx_dir), stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env,
                          cwd=conftest.ROOT)
  deadline = time.time() + 240
  while not marker.exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert marker.exists(), 'the child never reached the commit of checkpoint 20'
  written = os.listdir(workdir / 'checkpoints')
  proc.kill()
  proc.wait()
  # Killed with step 20 half-written; 16 (an epoch end) is the newest complete checkpoint.
  assert sorted(written, key=len) == ['8', '10', '16', '20.orbax-checkpoint-tmp'], written
  restarted = _run(_args(workdir, idx_dir))
  assert 'Resuming at step 16 ' in restarted.stderr, restarted.stderr[-2000:]
  assert not any('tmp' in p for p in os.listdir(workdir / 'checkpoints')), os.listdir(workdir / 'checkpoints')
  _assert_same_training(_final_state(workdir), uninterrupted)


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_zero_then_resumes(idx_dir, tmp_path, uninterrupted):
  proc = _start(_args(tmp_path, idx_dir))
  _wait_for_step(proc, 25)
  proc.send_signal(signal.SIGTERM)
  _, rest = proc.communicate(timeout=120)
  assert proc.returncode == 0, rest[-3000:]
  assert 'Run the same command to resume' in rest
  stopped_at = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3).latest_step()
  assert 25 <= stopped_at < TOTAL_STEPS
  _run(_args(tmp_path, idx_dir))
  _assert_same_training(_final_state(tmp_path), uninterrupted)


# In-process checks on the checkpointer itself.


@pytest.fixture(scope='module')
def tiny_state():
  return train_state.create_train_state(conftest.tiny_config(), jax.random.key(0))


def _save_steps(directory, state, steps):
  ckpt = checkpointing.Checkpointer(str(directory), 5)
  for step in steps:
    ckpt.save(state.replace(step=jnp.int32(step), g_params=jax.tree.map(lambda x: x + step, state.g_params)))
  ckpt.close()


def _damage(step_dir):
  """Truncates every data file of a checkpoint to half its size."""
  damaged = 0
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      size = os.path.getsize(path)
      if size > 16:
        with open(path, 'r+b') as f:
          f.truncate(size // 2)
        damaged += 1
  assert damaged


def test_damaged_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path, tiny_state, caplog):
  _save_steps(tmp_path, tiny_state, (2, 4))
  _damage(tmp_path / '4')
  restored = checkpointing.Checkpointer(str(tmp_path), 5).restore(tiny_state)
  assert int(restored.step) == 2
  chex.assert_trees_all_equal(restored.g_params, jax.tree.map(lambda x: x + 2, tiny_state.g_params))
  assert any(f'{tmp_path}/4' in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_deleted_files_and_no_usable_checkpoint_is_an_error_not_a_fresh_start(tmp_path, tiny_state):
  _save_steps(tmp_path, tiny_state, (2, 4))
  _damage(tmp_path / '2')
  for root, _, files in os.walk(tmp_path / '4'):
    for name in files:
      os.remove(os.path.join(root, name))
  with pytest.raises(errors.CheckpointError, match='no usable checkpoint'):
    checkpointing.Checkpointer(str(tmp_path), 5).restore(tiny_state)


def test_failed_checkpoint_write_stops_with_the_path_and_os_error(tmp_path, tiny_state, monkeypatch):
  ckpt = checkpointing.Checkpointer(str(tmp_path), 5)

  def no_space(*args, **kwargs):
    raise OSError(28, 'No space left on device')

  monkeypatch.setattr(ckpt._manager, 'save', no_space)  # pylint: disable=protected-access
  with pytest.raises(errors.CheckpointWriteError, match=r'No space left on device') as e:
    ckpt.save(tiny_state)
  assert str(tmp_path) in str(e.value)
  assert 'Free disk space' in str(e.value)


# Non-finite losses and failing sample writes, through train_and_evaluate on mock data.


def _nan_loss():
  base = losses.get('non_saturating')
  return losses.GANLoss(d=base.d, g=lambda real_logits, fake_logits: jnp.log(-jnp.abs(jnp.mean(fake_logits)) - 1.0))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  config = conftest.tiny_config()
  config.num_train_steps = 4
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    monkeypatch.setitem(losses.LOSSES, 'nan_for_test', _nan_loss())
    config.loss = 'nan_for_test'
    config.num_train_steps = 8
    with pytest.raises(errors.TrainingDivergedError, match=r'at step 5\b.*\(step 4\)'):
      loop.train_and_evaluate(config, str(tmp_path), allow_config_change=True)
  assert checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3).latest_step() == 4


def test_skip_nonfinite_skips_and_counts_the_steps(tmp_path, monkeypatch):
  config = conftest.tiny_config()
  config.num_train_steps = 3
  config.skip_nonfinite = True
  monkeypatch.setitem(losses.LOSSES, 'nan_for_test', _nan_loss())
  config.loss = 'nan_for_test'
  initial = train_state.create_train_state(config, jax.random.key(config.seed))
  with tfds.testing.mock_data(num_examples=32):
    final = loop.train_and_evaluate(config, str(tmp_path))
  assert int(final.step) == 3
  chex.assert_trees_all_equal(final.g_params, initial.g_params)
  chex.assert_trees_all_equal(final.d_params, initial.d_params)


def test_failing_sample_writes_are_logged_and_training_goes_on(tmp_path, caplog):
  config = conftest.tiny_config()
  config.num_train_steps = 4
  (tmp_path / 'samples').write_text('a file where the samples directory should be')
  with tfds.testing.mock_data(num_examples=32):
    final = loop.train_and_evaluate(config, str(tmp_path))
  assert int(final.step) == 4
  assert any('Could not write sample grid' in r.getMessage() for r in caplog.records)
