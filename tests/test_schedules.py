"""Training schedules: each performs the D and G updates it should, reads the right batches, and resumes exactly."""

import logging
import re

import chex
import jax
import numpy as np
import optax
import pytest

import conftest
from dcgan_jax import errors
from dcgan_jax.trainer import loop
from dcgan_jax.trainer import schedules
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import train_state


@pytest.fixture(scope='module')
def state():
  return train_state.create_train_state(conftest.tiny_config(), jax.random.key(0))


def _images(rows, seed=1):
  return jax.random.uniform(jax.random.key(seed), (rows, 8, 28, 28, 1), minval=-1, maxval=1)


def _adam_count(opt_state) -> int:
  """Updates Adam has applied, from its own counter (independent of the state's counters)."""
  counts = [s.count for s in jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
            if isinstance(s, optax.ScaleByAdamState)]
  return int(counts[0])


def _changed(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize('d_steps,g_steps', [(3, 2), (1, 0), (0, 1), (2, 1)])
def test_a_step_makes_the_updates_its_kind_names(state, d_steps, g_steps):
  kind = steps.StepKind(d_steps=d_steps, g_steps=g_steps)
  new, metrics = jax.jit(steps.step, static_argnums=2)(state, _images(kind.rows), kind)
  assert (_adam_count(new.d_opt_state), _adam_count(new.g_opt_state)) == (d_steps, g_steps)
  assert (int(new.d_updates), int(new.g_updates), int(new.step)) == (d_steps, g_steps, 1)
  assert (float(metrics['d_updates']), float(metrics['g_updates'])) == (d_steps, g_steps)
  assert _changed(new.d_params, state.d_params) == (d_steps > 0)
  assert _changed(new.g_params, state.g_params) == (g_steps > 0)
  # Each side reports its own metrics only.
  assert ('d_loss' in metrics) == (d_steps > 0) and ('g_loss' in metrics) == (g_steps > 0)


def test_each_d_update_reads_its_own_batch(state):
  kind = steps.StepKind(d_steps=2, g_steps=0)
  step = jax.jit(steps.step, static_argnums=2)
  images = _images(2)
  same, _ = step(state, images, kind)
  swapped, _ = step(state, images[::-1], kind)
  assert _changed(same.d_params, swapped.d_params)
  with pytest.raises(ValueError, match='takes 2 batches'):
    steps.step(state, images[:1], kind)


def test_train_step_d_step_and_g_step_are_the_public_single_updates(state):
  batch = {'image': _images(1)[0]}
  s, _ = jax.jit(train.d_step)(state, batch)
  assert (int(s.d_updates), int(s.g_updates)) == (1, 0) and not _changed(s.g_params, state.g_params)
  s, m = jax.jit(train.g_step)(s, batch)
  assert (int(s.d_updates), int(s.g_updates)) == (1, 1) and 'g_loss' in m and 'd_loss' not in m
  s, _ = jax.jit(train.train_step)(s, batch)
  assert (int(s.d_updates), int(s.g_updates), int(s.step)) == (2, 2, 3)


@pytest.mark.parametrize('check,target,cap,steps_to_switch', [
    ('g_fools', 0.0, 5, 1),  # Any rate reaches 0: the turn ends after one step.
    ('g_fools', 1.01, 3, 3),  # Unreachable: the cap ends it.
    ('d_accuracy', 1.01, 2, 2),
])
def test_adaptive_turn_ends_at_the_target_or_the_cap(state, check, target, cap, steps_to_switch):
  d_turn = check == 'd_accuracy'
  kind = steps.StepKind(d_steps=int(d_turn), g_steps=int(not d_turn), check=check, target=target, cap=cap)
  step = jax.jit(steps.step, static_argnums=2)
  s = state.replace(phase=np.int32(d_turn))
  for i in range(steps_to_switch):
    assert int(s.phase) == d_turn, i
    s, metrics = step(s, _images(1), kind, heldout=_images(1, seed=2)[0])
    rate = metrics['d_heldout_accuracy' if d_turn else 'g_fool_rate']
    assert 0.0 <= float(rate) <= 1.0
  assert int(s.phase) == 1 - d_turn and int(s.phase_steps) == 0


def _schedule(name, batches_per_epoch, **overrides):
  config = conftest.tiny_config()
  config.schedule = name
  for k, v in overrides.items():
    config[k] = v
  return schedules.Schedule(config, batches_per_epoch)


def test_epoch_blocks_trains_g_for_an_epoch_of_steps_then_d_over_its_batches():
  schedule = _schedule('epoch_blocks', 3)
  assert schedule.steps_per_epoch == 6
  assert [schedule.kind(s) for s in range(12)] == [steps.G_ONLY] * 3 + [steps.D_ONLY] * 3 + (
      [steps.G_ONLY] * 3 + [steps.D_ONLY] * 3)
  assert [schedule.d_updates_before(s) for s in (0, 3, 4, 6, 9, 10, 12)] == [0, 0, 1, 3, 3, 4, 6]
  # Calls of 2 on a grid anchored at each block's start, never straddling a block.
  assert list(schedule.chunks(0, 12, 2)) == [(0, 2), (2, 1), (3, 2), (5, 1), (6, 2), (8, 1), (9, 2), (11, 1)]
  assert list(schedule.chunks(4, 9, 2)) == [(4, 1), (5, 1), (6, 2), (8, 1)]  # A resumed run: the same cuts.


def test_alternating_reads_d_steps_batches_per_step():
  schedule = _schedule('alternating', 10, d_steps=3, g_steps=2)
  kind = schedule.kind(5)
  assert (kind.d_steps, kind.g_steps, kind.rows) == (3, 2, 3)
  assert schedule.steps_per_epoch == 3 and schedule.d_updates_before(5) == 15
  np.testing.assert_array_equal(schedules.batch_numbers(kind, 2, 15), [15, 16, 17, 18, 19, 20])
  np.testing.assert_array_equal(schedules.batch_numbers(steps.G_ONLY, 2, 4), [4, 4])  # Read, never consumed.


@pytest.mark.parametrize('start,total,per_call,expected', [
    (0, 10, 4, [(0, 4), (4, 4), (8, 2)]),
    (6, 13, 4, [(6, 2), (8, 4), (12, 1)]),  # A resumed run returns to the grid anchored at 0.
    (0, 3, 1, [(0, 1), (1, 1), (2, 1)]),
    (5, 5, 4, []),
])
def test_chunks_cover_the_steps_on_a_grid_anchored_at_zero(start, total, per_call, expected):
  assert list(_schedule('alternating', 4).chunks(start, total, per_call)) == expected
  assert list(_schedule('adaptive', 4).chunks(start, total, per_call)) == [(s, 1) for s in range(start, total)]


def test_hold_out_is_a_random_disjoint_split():
  images = np.arange(20)[:, None]
  train_images, heldout = schedules.hold_out(images, 4, seed=0)
  assert heldout.shape == (4, 1) and train_images.shape == (16, 1)
  assert sorted(np.concatenate([train_images, heldout])[:, 0]) == list(range(20))
  assert list(heldout[:, 0]) != [16, 17, 18, 19]


def _run(tmp_path, name, idx_dir, allow_config_change=False, **overrides):
  config = conftest.tiny_config()
  config.data.source, config.data.path, config.data.split = 'idx', str(idx_dir), 'test'
  config.log_every_steps = 100
  for k, v in overrides.items():
    config[k] = v
  return loop.train_and_evaluate(config, str(tmp_path / name), allow_config_change=allow_config_change)


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 32)  # Batch 8: 4 batches per epoch.


def test_schedules_end_to_end_make_the_documented_numbers_of_updates(tmp_path, idx_dir, caplog):
  caplog.set_level(logging.INFO)
  s = _run(tmp_path, 'alt', idx_dir, d_steps=2, g_steps=1, num_epochs=2, steps_per_call=2)
  assert (int(s.step), int(s.d_updates), int(s.g_updates)) == (4, 8, 4)  # 2 epochs of 4 batches, 2 per step.
  assert (_adam_count(s.d_opt_state), _adam_count(s.g_opt_state)) == (8, 4)
  s = _run(tmp_path, 'blocks', idx_dir, schedule='epoch_blocks', num_epochs=1, steps_per_call=3)
  assert (int(s.step), int(s.d_updates), int(s.g_updates)) == (8, 4, 4)
  assert re.search(r'updates D \d+ G \d+; \d+ img/s', caplog.text)  # Each side's updates in the log window.
  s = _run(tmp_path, 'adaptive', idx_dir, schedule='adaptive', num_train_steps=6, g_max_steps=2, d_max_steps=1,
           g_target=1.0, d_target=1.0)
  # Unreachable targets: turns of 2 G steps and 1 D step.
  assert (int(s.step), int(s.g_updates), int(s.d_updates)) == (6, 4, 2)
  assert 'G fools D' in caplog.text and 'D held-out accuracy' in caplog.text
  assert 'step 2: G turn of 2 steps over (cap of 2 steps); 2 G updates so far' in caplog.text
  assert 'step 3: D turn of 1 steps over' in caplog.text


def test_adaptive_schedule_resumes_in_the_same_turn_bit_identically(tmp_path, idx_dir):
  flags = dict(schedule='adaptive', g_max_steps=3, d_max_steps=2, g_target=0.9, d_target=0.9,
               checkpoint_every_steps=0, checkpoint_every_epochs=0)
  _run(tmp_path, 'resumed', idx_dir, num_train_steps=4, **flags)  # Stops inside the D turn.
  resumed = _run(tmp_path, 'resumed', idx_dir, num_train_steps=7, **flags)
  straight = _run(tmp_path, 'straight', idx_dir, num_train_steps=7, **flags)
  for field in ('g_params', 'd_params', 'd_updates', 'g_updates', 'phase', 'phase_steps'):
    chex.assert_trees_all_equal(getattr(resumed, field), getattr(straight, field))


def test_resuming_with_another_schedule_is_refused(tmp_path, idx_dir):
  _run(tmp_path, 'w', idx_dir, num_train_steps=2)
  with pytest.raises(errors.ConfigError, match='would not train as the run would have: d_steps: 1 -> 2'):
    _run(tmp_path, 'w', idx_dir, num_train_steps=4, d_steps=2)
  # Even when config changes are allowed, a checkpoint whose D update count the schedule cannot have reached is
  # refused (the stream position of the next real batch would be wrong).
  with pytest.raises(errors.CheckpointError, match='made 2 D updates, .* makes 4 by then: it was written with '
                     'another schedule'):
    _run(tmp_path, 'w', idx_dir, allow_config_change=True, num_train_steps=4, d_steps=2)


def test_hold_out_of_a_streamed_folder_keeps_the_training_part_streamed(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from dcgan_jax.data import image_folder  # pylint: disable=g-import-not-at-top
  for i in range(6):
    Image.new('L', (4, 4), 40 * i).save(tmp_path / f'{i}.png')
  streamed = image_folder.load_folder(str(tmp_path), 4, 1, max_bytes=1)
  train_part, heldout = schedules.hold_out(streamed, 2, seed=0)
  expected_train, expected_heldout = schedules.hold_out(image_folder.load_folder(str(tmp_path), 4, 1), 2, seed=0)
  assert isinstance(train_part, image_folder.StreamedFolder) and isinstance(heldout, np.ndarray)
  np.testing.assert_array_equal(train_part[np.arange(4)], expected_train)
  np.testing.assert_array_equal(heldout, expected_heldout)
