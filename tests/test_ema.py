"""The moving average of the generator's weights (`config.ema_decay`): its arithmetic and warm-up, the state layout
when off, checkpoints (also ones written before the option existed), populations, and sampling from it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

import conftest
import dcgan_jax
from dcgan_jax.trainer import checkpointing
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax.trainer import loop
from dcgan_jax import sample
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax.trainer import workdir as workdir_lib

# The state's fields before the optional ones existed (the layout of older checkpoints).
_OLD_FIELDS = ('step', 'g_params', 'g_batch_stats', 'g_opt_state', 'd_params', 'd_batch_stats', 'd_opt_state', 'rng',
               'd_updates', 'g_updates', 'phase', 'phase_steps', 'label_smoothing', 'gp_weight')


def _ema_config(decay=0.999):
  config = conftest.tiny_config()
  config.ema_decay = decay
  return config


def _images(seed=1):
  return jax.random.uniform(jax.random.key(seed), (8, 28, 28, 1), minval=-1, maxval=1)


def test_warm_up_values():
  t = jnp.asarray([0, 1, 10, 90, 9000, 100000])
  np.testing.assert_allclose(steps.ema_decay_at(0.999, t), [0.1, 2 / 11, 11 / 20, 91 / 100, 0.999, 0.999],
                             rtol=1e-7)
  np.testing.assert_allclose(steps.ema_decay_at(0.5, t), [0.1, 2 / 11, 0.5, 0.5, 0.5, 0.5], rtol=1e-7)


def test_ema_after_three_steps_equals_a_numpy_computation():
  state = train_state.create_train_state(_ema_config(0.999), jax.random.key(0))
  assert float(state.ema_decay) == pytest.approx(0.999)
  chex.assert_trees_all_equal(state.g_ema_params, state.g_params)  # Starts at the initial weights.
  expected = jax.tree.map(lambda p: np.asarray(p, np.float32), state.g_params)
  step = jax.jit(train.train_step)
  for t, decay in enumerate([0.1, 2 / 11, 3 / 12]):
    state, _ = step(state, {'image': _images(t)})
    d = np.float32(decay)
    expected = jax.tree.map(lambda e, p: d * e + (np.float32(1) - d) * np.asarray(p), expected, state.g_params)
    chex.assert_trees_all_close(state.g_ema_params, expected, rtol=1e-6, atol=1e-7)
  assert int(state.g_updates) == 3


def test_off_leaves_the_state_layout_unchanged(config):
  state = train_state.create_train_state(config, jax.random.key(0))
  assert (state.g_ema_params, state.ema_decay) == (None, None)
  old = {name: getattr(state, name) for name in _OLD_FIELDS}
  assert jax.tree.structure(jax.tree.leaves(state)) == jax.tree.structure(jax.tree.leaves(old))
  new, _ = jax.jit(train.train_step)(state, {'image': _images()})
  assert new.g_ema_params is None


def _old_layout_checkpoint(directory, state):
  """Writes `state` as a checkpoint of the layout before the optional fields (with its checksum), at its step."""
  manager = ocp.CheckpointManager(directory, item_handlers=ocp.StandardCheckpointHandler(),
                                  options=ocp.CheckpointManagerOptions(create=True))
  old = {name: getattr(state, name) for name in _OLD_FIELDS}
  manager.save(int(state.step), args=ocp.args.StandardSave(old),
               custom_metadata={'sha256': checkpointing.checksum(state)})
  manager.wait_until_finished()
  manager.close()


def test_checkpoint_round_trip_and_a_checkpoint_from_before_the_option(config, tmp_path):
  state = train_state.create_train_state(_ema_config(0.99), jax.random.key(0))
  state, _ = jax.jit(train.train_step)(state, {'image': _images()})
  checkpointer = checkpointing.Checkpointer(str(tmp_path / 'ema'), 3)
  checkpointer.save(state)
  checkpointer.wait()
  restored = checkpointer.restore(train_state.create_train_state(_ema_config(0.99), jax.random.key(5)))
  checkpointer.close()
  chex.assert_trees_all_equal(restored.g_ema_params, state.g_ema_params)
  assert float(restored.ema_decay) == pytest.approx(0.99)

  plain = train_state.create_train_state(config, jax.random.key(0))
  plain, _ = jax.jit(train.train_step)(plain, {'image': _images()})
  _old_layout_checkpoint(str(tmp_path / 'old'), plain)
  old = checkpointing.Checkpointer(str(tmp_path / 'old'), 3)
  restored = old.restore(train_state.create_train_state(config, jax.random.key(5)))
  chex.assert_trees_all_equal(restored, plain)
  # Resumed with the EMA switched on: the average starts at the restored weights.
  template = train_state.create_train_state(_ema_config(0.99), jax.random.key(5))
  restored = train_state.with_hyperparameters(old.restore(template), template)
  old.close()
  chex.assert_trees_all_equal(restored.g_ema_params, plain.g_params)
  assert float(restored.ema_decay) == pytest.approx(0.99)
  # And switched off again: dropped.
  dropped = train_state.with_hyperparameters(restored, train_state.create_train_state(config, jax.random.key(5)))
  assert (dropped.g_ema_params, dropped.ema_decay) == (None, None)
  # A checkpoint with an EMA restored into a state without one (ema_decay set to 0 on a resume): the EMA is dropped.
  again = checkpointing.Checkpointer(str(tmp_path / 'ema'), 3)
  without = again.restore(train_state.create_train_state(config, jax.random.key(5)))
  again.close()
  assert (without.g_ema_params, without.ema_decay) == (None, None)
  chex.assert_trees_all_equal(without.g_params, state.g_params)


def test_population_sweeps_the_decay_under_vmap():
  config = _ema_config()
  population = dcgan_jax.create_population(config, [0, 1], ema_decay=[0.5, 0.9])
  population, metrics = jax.jit(jax.vmap(train.train_step, in_axes=(0, None)))(population, {'image': _images()})
  assert metrics['g_loss'].shape == (2,)
  for i, decay in enumerate([0.5, 0.9]):
    member = dcgan_jax.member(population, i)
    assert float(member.ema_decay) == pytest.approx(decay)
    first = train_state.create_train_state(_ema_config(decay), jax.random.key(i))
    # After one G update the warm-up's 0.1 applies (below both decays): ema = 0.1 * init + 0.9 * new.
    expected = jax.tree.map(lambda e, p: 0.1 * e + 0.9 * p, first.g_params, member.g_params)
    chex.assert_trees_all_close(member.g_ema_params, expected, rtol=1e-5, atol=1e-6)


def test_generate_picks_the_ema_by_default():
  state = train_state.create_train_state(_ema_config(0.5), jax.random.key(0))
  state, _ = jax.jit(train.train_step)(state, {'image': _images()})
  z = jax.random.uniform(jax.random.key(3), (4, 8), minval=-1, maxval=1)
  ema = dcgan_jax.generate(state, z)
  np.testing.assert_array_equal(ema, dcgan_jax.generate(state, z, generator='ema'))
  np.testing.assert_array_equal(ema, dcgan_jax.generate(state.replace(g_params=state.g_ema_params), z,
                                                        generator='raw'))
  raw = dcgan_jax.generate(state, z, generator='raw')
  assert float(jnp.max(jnp.abs(raw - ema))) > 1e-5  # Running averages of one step: small images.
  plain = state.replace(g_ema_params=None, ema_decay=None)
  np.testing.assert_array_equal(dcgan_jax.generate(plain, z), raw)
  with pytest.raises(ValueError, match="generator='ema': this state has no EMA"):
    dcgan_jax.generate(plain, z, generator='ema')
  with pytest.raises(ValueError, match="generator='best': must be one of auto, ema, raw"):
    dcgan_jax.generate(state, z, generator='best')


def test_a_run_checkpoints_its_ema_and_the_sample_command_uses_it(tmp_path):
  config = _ema_config(0.9)
  config.num_epochs = 1
  with tfds.testing.mock_data(num_examples=16):
    final = loop.train_and_evaluate(config, str(tmp_path / 'run'))
  workdir = str(tmp_path / 'run')
  _, state = sample.load(workdir)
  chex.assert_trees_all_equal(jax.device_get(state.g_ema_params), jax.device_get(final.g_ema_params))
  default = sample.run(workdir, str(tmp_path / 'd.npy'), num=4)
  np.testing.assert_array_equal(default, sample.run(workdir, str(tmp_path / 'e.npy'), num=4, generator='ema'))
  raw = sample.run(workdir, str(tmp_path / 'r.npy'), num=4, generator='raw')
  assert float(np.max(np.abs(raw - default))) > 1e-4
  z = train.sample_noise(jax.random.key(0), (4, 8), config.noise)
  np.testing.assert_allclose(default, train.generate(state, z, use_batch_stats=True), atol=1e-6)
  exported = jax.export.deserialize(bytearray(dcgan_jax.export_generator(state, use_batch_stats=True)))
  np.testing.assert_allclose(exported.call(z), default, atol=1e-5)


def test_sample_command_refuses_ema_for_a_run_without_it(tmp_path):
  workdir_lib.write_record(str(tmp_path), conftest.tiny_config(), [])  # config.json: checked before any restore.
  with pytest.raises(errors.ConfigError, match='--generator=ema: the run in .* was trained without an EMA'):
    sample.run(str(tmp_path), str(tmp_path / 'x.npy'), generator='ema')
  with pytest.raises(errors.ConfigError, match='--generator=best must be ema or raw'):
    sample.run(str(tmp_path), str(tmp_path / 'x.npy'), generator='best')


@pytest.mark.parametrize('value', [1.0, -0.1])
def test_bad_decay_is_one_line(value):
  config = conftest.tiny_config()
  config.ema_decay = value
  with pytest.raises(errors.ConfigError) as info:
    config_validation.validate(config)
  assert str(info.value).splitlines()[1:] == [f'  config.ema_decay={value!r}: must be a number in [0, 1)']
