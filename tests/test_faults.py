"""Never lose a run, part 2 (issue 16): hangs, races and poisoned checkpoints, each reproduced as it was found.

Process-level faults run `main.py` (or the sample CLI) as a subprocess with the small `mnist_fnn` config on a
64-image IDX fixture; every subprocess has a timeout, so a hang fails the test instead of blocking it.
"""

import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import conftest
import dcgan_jax
from dcgan_jax.trainer import loop
from dcgan_jax.trainer import checkpointing
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax.data import image_folder
from dcgan_jax import losses
from dcgan_jax import models
from dcgan_jax import sample
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.trainer import workdir

STEPS = 30  # 64 images, batch 8: 8 steps per epoch.


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 64)


def _args(workdir, idx_dir, *extra):
  return [sys.executable, 'main.py', '--config=configs/mnist_fnn.py', f'--workdir={workdir}',
          '--config.data.source=idx', f'--config.data.path={idx_dir}', '--config.data.split=test',
          '--config.batch_size=8', '--config.latent_dim=8', '--config.model.generator.features=(16,)',
          '--config.model.discriminator.features=(16,)', '--config.num_samples=4', '--config.log_every_steps=5',
          '--config.eval_every_steps=-1', f'--config.num_train_steps={STEPS}', '--config.checkpoint_every_steps=10',
          *extra]


def _run(args, timeout=120):
  return subprocess.run(args, capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT,
                        timeout=timeout)


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  error_lines = [line for line in proc.stderr.splitlines() if line.startswith('Error: ')]
  assert len(error_lines) == 1, proc.stderr[-3000:]
  for fragment in fragments:
    assert fragment in error_lines[0], error_lines[0]
  return error_lines[0]


@contextlib.contextmanager
def _unwritable(directory):
  """`directory` refuses new entries while inside: immutable for root (which ignores permission bits), else 0o555."""
  directory.mkdir(parents=True, exist_ok=True)
  root = os.geteuid() == 0
  if root:
    subprocess.run(['chattr', '+i', str(directory)], check=True)
  else:
    directory.chmod(0o555)
  try:
    yield directory
  finally:
    if root:
      subprocess.run(['chattr', '-i', str(directory)], check=True)
    else:
      directory.chmod(0o755)


# 1. A checkpoint directory that refuses writes: one line and exit 1, promptly (it used to hang forever).


@pytest.mark.slow
def test_unwritable_checkpoint_directory_stops_promptly_with_one_line(tmp_path, idx_dir):
  with _unwritable(tmp_path / 'checkpoints'):
    proc = _run(_args(tmp_path, idx_dir), timeout=120)
  line = _assert_one_line_error(proc, f'{tmp_path}/checkpoints', 'writable', 'run the same command')
  assert 'Free disk space' not in line


# 3. Poisoned "good" checkpoints: an update that makes the parameters NaN while the losses (computed before it) are
# finite.


def _nan_gradient_loss():
  """The non-saturating loss plus a term whose value is 0 and whose gradient is Inf: finite losses, NaN updates."""
  base = losses.get('non_saturating')

  def g(real_logits, fake_logits):
    mean = jnp.mean(fake_logits)
    return base.g(real_logits, fake_logits) + jnp.sqrt(mean - jax.lax.stop_gradient(mean))

  return losses.GANLoss(d=base.d, g=g)


def test_update_that_makes_parameters_nan_is_never_checkpointed(tmp_path, monkeypatch):
  config = conftest.tiny_config()
  config.num_train_steps = 5
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    monkeypatch.setitem(losses.LOSSES, 'nan_gradient_for_test', _nan_gradient_loss())
    config.loss = 'nan_gradient_for_test'
    config.num_train_steps = 8
    # Step 6 is a checkpoint step; its losses are finite, its update is not.
    with pytest.raises(errors.TrainingDivergedError, match=r'at step 6\b.*\(step 5\)'):
      loop.train_and_evaluate(config, str(tmp_path), allow_config_change=True)
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3)
  assert ckpt.all_steps() == [2, 4, 5]
  restored = ckpt.restore(train_state.create_train_state(conftest.tiny_config(), jax.random.key(0)))
  assert int(restored.step) == 5
  assert bool(steps.all_finite(restored))


def _exploding_adam(b1, b2):
  """The default optimizer (Adam, its learning rate a hyperparameter in the state) with every update times Inf."""
  def adam_times_inf(learning_rate, b1, b2):
    return optax.chain(optax.adam(learning_rate, b1=b1, b2=b2), optax.scale(jnp.inf))
  return optax.inject_hyperparams(adam_times_inf, static_args=('b1', 'b2'))(learning_rate=0.0, b1=b1, b2=b2)


def test_skip_nonfinite_skips_updates_that_leave_nonfinite_parameters(tmp_path, monkeypatch):
  config = conftest.tiny_config()
  config.num_train_steps = 4
  config.skip_nonfinite = True
  monkeypatch.setattr(train_state, '_adam', _exploding_adam)  # Finite losses and gradients, Inf parameters after.
  initial = train_state.create_train_state(config, jax.random.key(config.seed))
  with tfds.testing.mock_data(num_examples=32):
    final = loop.train_and_evaluate(config, str(tmp_path))
  assert int(final.step) == 4
  chex.assert_trees_all_equal(final.g_params, initial.g_params)
  chex.assert_trees_all_equal(final.d_params, initial.d_params)
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3)
  assert ckpt.all_steps() == [2, 4]
  assert bool(steps.all_finite(ckpt.restore(initial)))


def test_all_finite_tells_a_nonfinite_update_that_the_losses_do_not_show():
  state = train_state.create_train_state(conftest.tiny_config(), jax.random.key(0))
  batch = {'image': jnp.zeros((8, 28, 28, 1))}
  new, _ = jax.jit(train.train_step)(state, batch)
  assert bool(jax.jit(dcgan_jax.all_finite)(new)) is True
  exploding = optax.chain(optax.adam(2e-4, b1=0.5), optax.scale(jnp.inf))  # Finite losses, Inf parameters after.
  state = train_state.create_train_state(conftest.tiny_config(), jax.random.key(0), g_optimizer=exploding)
  new, metrics = jax.jit(train.train_step)(state, batch)
  assert np.isfinite(float(metrics['g_loss']))
  assert bool(jax.jit(dcgan_jax.all_finite)(new)) is False


def test_a_nonfinite_state_between_checks_names_the_steps_since_the_last_check(tmp_path, monkeypatch):
  config = conftest.tiny_config()  # Logs and checkpoints every 2 steps.
  config.num_train_steps = 4
  config.steps_per_call = 2  # The first check of the state: after the first call, at step 2.
  # Losses stay finite; the state check (the loop's, once per log/checkpoint) is what fails.
  monkeypatch.setattr(steps, 'all_finite', lambda state: jnp.bool_(False))
  with tfds.testing.mock_data(num_examples=32):
    with pytest.raises(errors.TrainingDivergedError,
                       match=r'at step 2 \(or a step since 1\); .*no checkpoint was written'):
      loop.train_and_evaluate(config, str(tmp_path))
  assert checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3).all_steps() == []


@pytest.mark.parametrize('field, value', [('g_optimizer.learning_rate', float('nan')),
                                          ('d_optimizer.learning_rate', float('inf')),
                                          ('gp_weight', float('nan')),
                                          ('model.generator.leaky_slope', float('inf')),
                                          ('model.discriminator.leaky_slope', float('nan'))])
def test_nonfinite_rates_and_weights_fail_validation(field, value):
  config = conftest.tiny_config()
  if field == 'gp_weight':
    config.loss, config.model.discriminator.batchnorm = 'wgan_gp', False
  *parents, name = field.split('.')
  parent = config
  for key in parents:
    parent = parent[key]
  parent[name] = value
  with pytest.raises(errors.ConfigError, match=rf'config\.{field}={value!r}: must be a finite number'):
    config_validation.validate(config)


def _save(directory, state, steps_and_shifts):
  ckpt = checkpointing.Checkpointer(str(directory), 5)
  for step, shift in steps_and_shifts:
    ckpt.save(state.replace(step=jnp.int32(step), g_params=jax.tree.map(lambda x: x + shift, state.g_params)))
  ckpt.close()


@pytest.fixture(scope='module')
def tiny_state():
  return train_state.create_train_state(conftest.tiny_config(), jax.random.key(0))


def test_checkpoint_with_nan_parameters_is_not_restored(tmp_path, tiny_state, caplog):
  _save(tmp_path, tiny_state, [(2, 0.0), (4, float('nan'))])
  restored = checkpointing.Checkpointer(str(tmp_path), 5).restore(tiny_state)
  assert int(restored.step) == 2
  assert any('NaN or Inf' in r.getMessage() for r in caplog.records)


def _run_dir(tmp_path, state, steps_and_shifts):
  """A workdir as main.py leaves it: config.json and checkpoints of the tiny config."""
  tmp_path.mkdir(exist_ok=True)
  (tmp_path / 'config.json').write_text(conftest.tiny_config().to_json_best_effort())
  _save(tmp_path / 'checkpoints', state, steps_and_shifts)
  return tmp_path


def test_sample_cli_refuses_nan_parameters_and_falls_back(tmp_path, tiny_state):
  workdir = _run_dir(tmp_path, tiny_state, [(2, 0.0), (4, float('nan'))])
  images = sample.run(str(workdir), str(tmp_path / 'latest.npy'), num=4)
  assert np.all(np.isfinite(images))
  with pytest.raises(errors.CheckpointError, match=r'no usable checkpoint.*4 \(DamagedCheckpointError: it holds NaN'):
    sample.run(str(workdir), str(tmp_path / 'four.npy'), checkpoint='4', num=4)
  assert not (tmp_path / 'four.npy').exists()


# 5. A damaged newest checkpoint is moved aside, so training its step again writes a good one.


def _data_files(step_dir):
  return [os.path.join(root, name) for root, _, files in os.walk(step_dir) for name in files
          if os.sep + 'd' + os.sep in os.path.join(root, name)]


def test_damaged_newest_checkpoint_is_replaced_when_its_step_is_trained_again(tmp_path):
  config = conftest.tiny_config()
  config.num_train_steps = 5
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    for path in _data_files(tmp_path / 'checkpoints' / '5'):
      os.truncate(path, os.path.getsize(path) // 2)
    again = loop.train_and_evaluate(config, str(tmp_path))
  assert int(again.step) == 5
  assert (tmp_path / 'checkpoints' / '5.damaged').is_dir()
  ckpt = checkpointing.Checkpointer(str(tmp_path / 'checkpoints'), 3)
  assert ckpt.all_steps() == [2, 4, 5]
  restored = ckpt.restore(train_state.create_train_state(config, jax.random.key(0)))
  chex.assert_trees_all_equal(restored.g_params, again.g_params)


# 6. Silent corruption: 8 overwritten bytes in a data file decode without an error; the checksum catches them.


def test_overwritten_bytes_fail_the_checksum_and_fall_back(tmp_path, tiny_state, caplog):
  _save(tmp_path, tiny_state, [(2, 0.0), (4, 1.0)])
  biggest = max(_data_files(tmp_path / '4'), key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(b'\x7f' * 8)
  restored = checkpointing.Checkpointer(str(tmp_path), 5).restore(tiny_state)
  assert int(restored.step) == 2
  chex.assert_trees_all_equal(restored.g_params, tiny_state.g_params)
  assert any(f'{tmp_path}/4' in r.getMessage() and 'checksum' in r.getMessage() for r in caplog.records)
  assert (tmp_path / '4.damaged').is_dir()


# 2. One run per workdir.


def test_second_lock_on_a_workdir_names_the_holder(tmp_path):
  with workdir.lock(str(tmp_path)):
    assert (tmp_path / '.lock').read_text() == f'host {socket.gethostname()} pid {os.getpid()}\n'
    with pytest.raises(errors.WorkdirBusyError, match=rf'in use by another run \(host .* pid {os.getpid()},'):
      with workdir.lock(str(tmp_path)):
        pass
  assert (tmp_path / '.lock').read_text() == ''
  with workdir.lock(str(tmp_path)):  # Released: free again.
    pass


def test_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
  (tmp_path / '.lock').write_text('host elsewhere pid 12345\n')
  with workdir.lock(str(tmp_path)):
    pass
  assert any('host elsewhere pid 12345' in r.getMessage() and 'no longer running' in r.getMessage()
             for r in caplog.records)


@pytest.mark.slow
def test_second_run_on_a_busy_workdir_exits_at_once_naming_the_holder(tmp_path, idx_dir):
  first = subprocess.Popen(_args(tmp_path, idx_dir, '--config.num_train_steps=100000'), stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT)
  try:
    for line in first.stderr:  # Past the lock and the first checkpoint.
      if 'step 10/100000' in line:
        break
    second = _run(_args(tmp_path, idx_dir), timeout=60)
    _assert_one_line_error(second, str(tmp_path), f'pid {first.pid}', 'another --workdir')
    assert first.poll() is None
  finally:
    first.kill()
    first.wait(timeout=60)
  # The dead run's lock is taken over; its checkpoints (beyond 30 steps: nothing to train) are kept.
  third = _run(_args(tmp_path, idx_dir), timeout=120)
  assert third.returncode == 0, third.stderr[-3000:]
  assert f'left by a run that is no longer running (host {socket.gethostname()} pid {first.pid})' in third.stderr, (
      third.stderr[-3000:])


# 4 and 7. config.json is written only after the resume checks; changes that break exact resume are refused.


def test_resume_with_changes_that_break_exactness_is_refused_and_config_json_kept(tmp_path):
  config = conftest.tiny_config()
  config.num_train_steps = 2
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    saved = (tmp_path / 'config.json').read_text()
    config.batch_size, config.seed, config.g_optimizer.learning_rate = 16, 1, 1e-3
    with pytest.raises(errors.ConfigError) as e:
      loop.train_and_evaluate(config, str(tmp_path))
  assert 'batch_size: 8 -> 16; seed: 0 -> 1.' in str(e.value)
  assert '--allow_config_change' in str(e.value) and 'learning_rate' not in str(e.value)
  assert (tmp_path / 'config.json').read_text() == saved


def test_a_run_recorded_before_an_option_existed_resumes_with_it_off(tmp_path):
  """config.json of a run started before `class_loss_weight` (and conditional_batchnorm) existed: resuming with
  them off is no change; switching one on is (class_loss_weight breaks exact resume)."""
  config = conftest.tiny_config()
  config.num_train_steps, config.data.source = 2, 'tfds'  # The record holds the resolved source.
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    record = json.loads((tmp_path / 'config.json').read_text())
    del record['class_loss_weight'], record['model']['generator']['conditional_batchnorm']
    (tmp_path / 'config.json').write_text(json.dumps(record))
    assert workdir.config_changes(record, config) == {}
    config.num_train_steps = 4
    assert int(loop.train_and_evaluate(config, str(tmp_path)).step) == 4
  config.class_loss_weight = 0.5
  assert workdir.config_changes(record, config) == {'class_loss_weight': (None, 0.5), 'num_train_steps': (2, 4)}
  assert workdir.breaks_exact_resume('class_loss_weight')


def test_allowed_config_change_is_recorded_in_the_history(tmp_path):
  config = conftest.tiny_config()
  config.num_train_steps = 2
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    config.batch_size, config.num_train_steps = 16, 4
    final = loop.train_and_evaluate(config, str(tmp_path), allow_config_change=True)
  assert int(final.step) == 4
  record = json.loads((tmp_path / 'config.json').read_text())
  assert record['batch_size'] == 16
  [entry] = record['history']
  assert entry['changes'] == {'batch_size': [8, 16], 'num_train_steps': [2, 4]}
  assert entry['breaks_exact_resume'] is True
  assert sample.load_run_config(str(tmp_path)).batch_size == 16


def test_refused_resume_of_another_model_keeps_config_json(tmp_path):
  config = conftest.tiny_config()
  config.num_train_steps = 2
  with tfds.testing.mock_data(num_examples=32):
    loop.train_and_evaluate(config, str(tmp_path))
    saved = (tmp_path / 'config.json').read_text()
    config.latent_dim = 16
    with pytest.raises(errors.CheckpointError, match='another model'):
      loop.train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / 'config.json').read_text() == saved


def test_network_changes_are_recorded_under_their_network(tmp_path):
  """config.json's change list names each network's fields; a changed family shows every field that came or went.
  None of model.* is in EXACT_RESUME_FIELDS: a network of other shapes is refused by the checkpoint restore (above),
  one of the same shapes (dropout, activation, slope) resumes with the change logged and recorded."""
  config = conftest.tiny_config()
  workdir.write_record(str(tmp_path), config, [])
  saved = workdir.read_record(str(tmp_path))
  config.model.discriminator.dropout = 0.25
  config.model.generator = models.network_config('generator', 'mlp', features=(8, 4))
  changes = workdir.config_changes(saved, config)
  assert changes == {'model.discriminator.dropout': (0.0, 0.25), 'model.generator.family': ('dcgan', 'mlp'),
                     'model.generator.output_activation': ('tanh', 'sigmoid'),
                     'model.generator.batchnorm': (None, True), 'model.generator.kernel_size': (5, None),
                     'model.generator.start_size': (7, None), 'model.generator.spectral_norm': (False, None),
                     'model.generator.conditional_batchnorm': (False, None),
                     'model.generator.output_weight_init': ('', None),
                     'model.generator.weight_init': ('flax', None)}
  assert not any(workdir.breaks_exact_resume(field) for field in changes)


# 9. One line instead of a traceback, checked before any heavy work.

CONFIG_FILES = {
    'notes.md': ('# Notes\n\n1st line\n', 'is not a Python config file'),
    'hostname': ('vm\n', 'is not a Python config file'),
    'config.json': ('{}\n', 'is not a Python config file'),
    'broken.py': ('def get_config(:\n', 'does not run (SyntaxError'),
    'nothing.py': ('x = 1\n', 'defines no get_config() function'),
    'as_dict.py': ('def get_config():\n  return {"seed": 1}\n', 'returned dict, not an ml_collections.ConfigDict'),
    'as_none.py': ('def get_config():\n  return None\n', 'returned NoneType, not an ml_collections.ConfigDict'),
}


@pytest.mark.parametrize('name', sorted(CONFIG_FILES) + ['missing.py', 'a_directory'])
def test_bad_config_files_are_one_line(tmp_path, name):
  if name in CONFIG_FILES:
    (tmp_path / name).write_text(CONFIG_FILES[name][0])
    expected = CONFIG_FILES[name][1]
  elif name == 'a_directory':
    (tmp_path / name).mkdir()
    expected = 'is a directory'
  else:
    expected = 'does not exist'
  # In-process first (cheap), then one real run of main.py for the exit status and the single line.
  from dcgan_jax.cli import train as train_cli  # pylint: disable=g-import-not-at-top
  assert expected in train_cli.check_config_file(str(tmp_path / name))
  if name in ('as_none.py', 'missing.py'):
    proc = _run([sys.executable, 'main.py', f'--config={tmp_path / name}', f'--workdir={tmp_path / "w"}'])
    _assert_one_line_error(proc, f'--config={tmp_path / name}', expected, 'configs/mnist.py')


@pytest.mark.slow
@pytest.mark.parametrize('case', ['empty', 'a_file', 'read_only'])
def test_bad_workdir_is_one_line_before_the_data_is_read(tmp_path, case):
  missing_data = tmp_path / 'no_data_here'  # Reading the data would fail with another message.
  workdir = {'empty': '', 'a_file': tmp_path / 'file', 'read_only': tmp_path / 'ro'}[case]
  if case == 'a_file':
    workdir.write_text('')
  args = [sys.executable, 'main.py', '--config=configs/mnist_fnn.py', f'--workdir={workdir}',
          '--config.data.source=idx', f'--config.data.path={missing_data}', '--config.data.split=test']
  if case == 'read_only':
    with _unwritable(workdir):
      proc = _run(args)
  else:
    proc = _run(args)
  expected = {'empty': '--workdir is empty', 'a_file': 'is a file, not a directory',
              'read_only': f'--workdir={workdir} cannot be used'}[case]
  _assert_one_line_error(proc, expected)


def _sample_cli(*args):
  return _run([sys.executable, '-m', 'dcgan_jax.cli.sample', *args], timeout=120)


@pytest.mark.slow
def test_sample_cli_errors_are_one_line_before_the_work(tmp_path, tiny_state):
  workdir = _run_dir(tmp_path / 'run', tiny_state, [(2, 0.0)])
  with _unwritable(tmp_path / 'locked'):
    proc = _sample_cli(f'--workdir={workdir}', f'--out={tmp_path / "locked" / "grid.png"}')
  _assert_one_line_error(proc, f'--out={tmp_path / "locked" / "grid.png"}', 'writable directory')
  proc = _sample_cli(f'--workdir={workdir}', f'--out={tmp_path / "i.png"}', '--interpolate', '--steps=0')
  _assert_one_line_error(proc, '--steps=0 must be at least 2')


@pytest.mark.slow
def test_sample_cli_falls_back_past_a_damaged_latest_checkpoint(tmp_path, tiny_state):
  workdir = _run_dir(tmp_path / 'run', tiny_state, [(2, 0.0), (4, 1.0)])
  for path in _data_files(workdir / 'checkpoints' / '4'):
    os.truncate(path, os.path.getsize(path) // 2)
  proc = _sample_cli(f'--workdir={workdir}', f'--out={tmp_path / "s.npy"}', '--num=4')
  # (tensorstore's threads may still print "Event loop is closed" tracebacks after the failed read: not asserted.)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f'{workdir}/checkpoints/4 is unusable' in proc.stderr
  assert np.all(np.isfinite(np.load(tmp_path / 's.npy')))
  assert (workdir / 'checkpoints' / '4').is_dir()  # The sample CLI only reads.


# 8. Image folders with directory symlink loops: each real directory read once, each file counted once.


def _write_pngs(directory, count):
  directory.mkdir(parents=True, exist_ok=True)
  for i in range(count):
    Image.fromarray(np.full((8, 8), i * 10, np.uint8), 'L').save(directory / f'{i}.png')


def _list_within(path, seconds=30):
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    return pool.submit(image_folder.list_images, str(path)).result(timeout=seconds)


def test_symlink_to_its_own_folder_does_not_multiply_the_data(tmp_path, caplog):
  _write_pngs(tmp_path, 8)
  os.symlink('.', tmp_path / 'loop')
  assert [os.path.basename(f) for f in _list_within(tmp_path)] == [f'{i}.png' for i in range(8)]
  caplog.clear()
  images = image_folder.load_folder(str(tmp_path), 8, 1)
  assert images.shape == (8, 8, 8, 1)
  [warning] = [r.getMessage() for r in caplog.records if 'already read' in r.getMessage()]
  assert '1 directory symlink(s)' in warning and 'loop -> .' in warning


def test_two_symlink_loops_end_and_files_reached_twice_count_once(tmp_path, caplog):
  _write_pngs(tmp_path / 'a', 3)
  _write_pngs(tmp_path / 'b', 2)
  os.symlink('../b', tmp_path / 'a' / 'to_b')
  os.symlink('../a', tmp_path / 'b' / 'to_a')
  os.symlink('a/0.png', tmp_path / 'same.png')
  files = _list_within(tmp_path)
  assert [os.path.relpath(f, tmp_path) for f in files] == ['same.png', 'a/1.png', 'a/2.png', 'b/0.png', 'b/1.png']
  [warning] = [r.getMessage() for r in caplog.records if 'already read' in r.getMessage()]
  assert '2 directory symlink(s)' in warning and '1 image file(s) reached by more than one path' in warning


# 10. Disk full: one line, the checkpoints already written intact and resumable.


_HALF_LINE_THEN_EXIT = """
import sys
from dcgan_jax.cli import train
sys.stderr.write('    ')  # What another thread's traceback printer leaves: a line's indentation, no newline yet.
sys.stderr.flush()
train.exit_now('Error: the disk is full')
"""


@pytest.mark.slow
def test_the_error_line_starts_a_line_of_its_own_even_mid_way_through_another_threads_line():
  proc = _run([sys.executable, '-c', _HALF_LINE_THEN_EXIT])
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert proc.stderr.splitlines()[-2:] == ['    ', 'Error: the disk is full'], proc.stderr[-3000:]


@pytest.mark.slow
def test_disk_full_stops_with_one_line_and_the_last_checkpoint_resumes(tmp_path, idx_dir):
  (tmp_path / 'checkpoints').mkdir()
  # A 600 KiB file system for the checkpoints (one fits, two do not), in a private mount namespace.
  # What the run left there is copied out before the namespace (and the file system) goes.
  checkpoints, kept = tmp_path / 'checkpoints', tmp_path / 'kept'
  script = (f'mount -t tmpfs -o size=600k tmpfs {checkpoints} || exit 99; "$@"; rc=$?; cp -a {checkpoints} {kept}; '
            'exit $rc')
  proc = _run(['unshare', '--mount', '--map-root-user', 'sh', '-c', script, 'sh', *_args(tmp_path, idx_dir)])
  assert proc.returncode == 1, proc.stderr[-3000:]
  errors_printed = [line for line in proc.stderr.splitlines() if line.startswith('Error: ')]
  assert len(errors_printed) == 1, proc.stderr[-5000:]
  line = errors_printed[0]
  for fragment in (f'{tmp_path}/checkpoints', 'Free disk space', 'run the same command'):
    assert fragment in line, line
  assert 'No space left' in line or 'RESOURCE_EXHAUSTED' in line, line
  # orbax's own tracebacks are debug output. (tensorstore's threads may still print "Event loop is closed"
  # tracebacks after the failed write; they name no file of ours and are not asserted on.)
  assert 'orbax' not in proc.stderr.replace(line, ''), proc.stderr[-3000:]
  assert sorted(os.listdir(kept)) == ['10.orbax-checkpoint-tmp', '8'], proc.stderr[-3000:]  # Step 8: epoch 1's end.
  os.rmdir(checkpoints)
  os.rename(kept, checkpoints)
  resumed = _run(_args(tmp_path, idx_dir))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'Resuming at step 8' in resumed.stderr, resumed.stderr[-3000:]
  assert sorted(os.listdir(checkpoints)) == ['20', '24', '30'], resumed.stderr[-3000:]
