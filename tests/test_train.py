"""The pure train step: determinism, jit equivalence, learning, metrics, sampling, and data parallelism."""

import dataclasses
import json
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dcgan_jax.data import input_pipeline
from dcgan_jax import train
from dcgan_jax import parallel
from dcgan_jax import train_state
import conftest


@pytest.fixture(scope='module')
def setup():
  config = conftest.tiny_config()
  state = train_state.create_train_state(config, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)
  return config, state, {'image': images}


@pytest.fixture(scope='module')
def jit_step():
  return jax.jit(train.train_step)


def test_state_has_the_public_fields(setup):
  _, state, _ = setup
  fields = [f.name for f in dataclasses.fields(state)]
  assert fields[:8] == ['step', 'g_params', 'g_batch_stats', 'g_opt_state', 'd_params', 'd_batch_stats',
                        'd_opt_state', 'rng']
  assert int(state.step) == 0
  assert jax.tree.leaves(state.g_batch_stats) and jax.tree.leaves(state.d_batch_stats)


def test_train_step_is_pure_and_deterministic(setup, jit_step):
  _, state, batch = setup
  s1, m1 = jit_step(state, batch)
  s2, m2 = jit_step(state, batch)
  chex.assert_trees_all_equal(s1, s2)
  chex.assert_trees_all_equal(m1, m2)
  assert int(s1.step) == 1
  # The input state is untouched (no hidden mutation) and the step changed every part of it.
  assert int(state.step) == 0
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats'):
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(getattr(state, field)),
                                                         jax.tree.leaves(getattr(s1, field)))), field


def test_jit_and_eager_agree(setup, jit_step):
  _, state, batch = setup
  s_jit, m_jit = jit_step(state, batch)
  with jax.disable_jit():
    s_eager, m_eager = train.train_step(state, batch)
  chex.assert_trees_all_close(m_jit, m_eager, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(s_jit.g_params, s_eager.g_params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(s_jit.d_params, s_eager.d_params, rtol=1e-4, atol=1e-5)


def test_metrics_are_the_documented_scalars_in_range(setup, jit_step):
  _, state, batch = setup
  _, metrics = jit_step(state, batch)
  assert set(metrics) == {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_acc_real', 'd_acc_fake', 'd_updates',
                          'g_updates'}
  for k, v in metrics.items():
    assert v.shape == () and np.isfinite(v), k
  assert float(metrics['d_updates']) == 1.0 and float(metrics['g_updates']) == 1.0
  for k in ('d_real', 'd_fake', 'd_acc_real', 'd_acc_fake'):
    assert 0.0 <= float(metrics[k]) <= 1.0


def test_noise_differs_per_step(setup, jit_step):
  # fold_in(rng, step): the second step must see other noise, hence other fake scores, on the same batch.
  _, state, batch = setup
  s1, m1 = jit_step(state, batch)
  _, m2 = jit_step(s1.replace(d_params=state.d_params, d_batch_stats=state.d_batch_stats,
                              g_params=state.g_params, g_batch_stats=state.g_batch_stats), batch)
  assert float(m1['d_fake']) != float(m2['d_fake'])


def test_discriminator_steps_lower_its_loss_on_a_fixed_batch(setup):
  config, state, batch = setup
  # Freeze G (zero learning rate) so only D learns, fast; its loss on the same real batch must fall.
  frozen, fast = optax.sgd(0.0), optax.adam(3e-3, b1=0.5)
  state = state.replace(g_tx=frozen, g_opt_state=frozen.init(state.g_params), d_tx=fast,
                        d_opt_state=fast.init(state.d_params))
  step = jax.jit(train.train_step)
  losses = []
  for _ in range(10):
    state, metrics = step(state, batch)
    losses.append(float(metrics['d_loss']))
  assert losses[-1] < 0.7 * losses[0], losses


def test_generate_shapes_range_and_batchnorm_switch(setup):
  config, state, batch = setup
  state, _ = jax.jit(train.train_step)(state, batch)
  z = jax.random.uniform(jax.random.key(2), (5, config.latent_dim), minval=-1, maxval=1)
  batch_stats_images = train.generate(state, z, use_batch_stats=True)
  assert batch_stats_images.shape == (5, 28, 28, 1)
  assert float(jnp.abs(batch_stats_images).max()) <= 1.0
  running_images = train.generate(state, z)
  assert running_images.shape == (5, 28, 28, 1)
  assert not np.allclose(batch_stats_images, running_images)
  # Pure: same inputs, same images.
  np.testing.assert_array_equal(running_images, train.generate(state, z))


def test_typed_and_raw_keys_give_the_same_state():
  config = conftest.tiny_config()
  a = train_state.create_train_state(config, jax.random.key(3))
  b = train_state.create_train_state(config, jax.random.PRNGKey(3))
  chex.assert_trees_all_equal(a, b)


_PARALLEL_SCRIPT = textwrap.dedent('''
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    sys.path.insert(0, 'tests')
    import conftest
    from dcgan_jax import parallel
    from dcgan_jax import steps
    from dcgan_jax import train
    from dcgan_jax.data import input_pipeline
    assert jax.device_count() == 4, jax.devices()
    state, images = conftest.sgd_state_and_images()
    out = {}
    for sync in (True, False):
      mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
      step = parallel.make_parallel_train_step(mesh, sync, (-1.0, 1.0))
      # Two steps on the same batch, fused into one call.
      sharded = jax.device_put(np.stack([images, images]),
                               jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data')))
      s, m = step(jax.tree.map(jnp.copy, state), sharded)
      out[str(sync)] = {'g': [np.asarray(x).tolist() for x in jax.tree.leaves(s.g_params)],
                        'd': [np.asarray(x).tolist() for x in jax.tree.leaves(s.d_params)],
                        'm': {k: float(v[-1]) for k, v in m.items()}}
    # Per-device BatchNorm reference: 4 separate per-shard computations (vmap, one device), gradients averaged.
    shards = input_pipeline.to_float(images, (-1.0, 1.0)).reshape(4, 2, 28, 28, 1)
    ref = jax.jit(jax.vmap(lambda s, b: steps.step(s, b[None], axis_name="data"), in_axes=(None, 0),
                           axis_name='data'))
    s, _ = ref(state, shards)
    s, m = ref(jax.tree.map(lambda x: x[0], s), shards)
    out['per_shard'] = {'g': [np.asarray(x[0]).tolist() for x in jax.tree.leaves(s.g_params)],
                        'd': [np.asarray(x[0]).tolist() for x in jax.tree.leaves(s.d_params)]}
    json.dump(out, sys.stdout)
''')


@pytest.fixture(scope='module')
def four_device_result():
  proc = subprocess.run([sys.executable, '-c', _PARALLEL_SCRIPT], capture_output=True, text=True,
                        env=conftest.subprocess_env(num_devices=4), cwd=conftest.ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


def _one_device_reference():
  """Two SGD steps on one device over the whole batch."""
  state, images = conftest.sgd_state_and_images()
  step = jax.jit(train.train_step)
  batch = {'image': input_pipeline.to_float(images, (-1.0, 1.0))}
  s, _ = step(state, batch)
  s, m = step(s, batch)
  return s, m


@pytest.mark.slow
def test_four_devices_with_synchronized_batchnorm_match_one_device(four_device_result):
  s, m = _one_device_reference()
  got = four_device_result['True']
  for want, have in zip(jax.tree.leaves(s.g_params), got['g']):
    np.testing.assert_allclose(np.asarray(have), want, rtol=2e-4, atol=2e-6)
  for want, have in zip(jax.tree.leaves(s.d_params), got['d']):
    np.testing.assert_allclose(np.asarray(have), want, rtol=2e-4, atol=2e-6)
  for k, v in m.items():
    np.testing.assert_allclose(got['m'][k], float(v), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_per_device_batchnorm_equals_the_mean_of_per_shard_computations(four_device_result):
  sync, local, ref = four_device_result['True'], four_device_result['False'], four_device_result['per_shard']
  assert all(np.isfinite(v) for v in local['m'].values())
  for key in ('g', 'd'):
    for want, have in zip(ref[key], local[key]):
      np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=2e-4, atol=2e-6)
  # Per-device statistics normalize each quarter by itself: not the synchronized result.
  assert any(not np.allclose(a, b) for a, b in zip(sync['d'], local['d']))


def test_bfloat16_compute_keeps_float32_state_and_finite_losses():
  config = conftest.tiny_config()
  config.dtype = 'bfloat16'
  state = train_state.create_train_state(config, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)
  step = jax.jit(train.train_step)
  for _ in range(2):
    state, metrics = step(state, {'image': images})
  for k, v in metrics.items():
    assert v.dtype == jnp.float32 and np.isfinite(v), k
  for field in ('g_params', 'd_params', 'g_batch_stats', 'd_batch_stats', 'g_opt_state', 'd_opt_state'):
    for leaf in jax.tree.leaves(getattr(state, field)):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert leaf.dtype == jnp.float32, field
  z = jnp.zeros((2, config.latent_dim))
  assert train.generate(state, z).dtype == jnp.float32
  # The computation really ran in bfloat16: the jaxpr holds bfloat16 convolutions.
  jaxpr = str(jax.make_jaxpr(train.train_step)(state, {'image': images}))
  assert 'bf16' in jaxpr


def test_wgan_gp_with_a_batchnorm_free_critic_trains_finitely():
  config = conftest.tiny_config()
  config.loss = 'wgan_gp'
  config.model.discriminator.batchnorm = False
  state = train_state.create_train_state(config, jax.random.key(0))
  images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)
  step = jax.jit(train.train_step)
  for _ in range(2):
    state, metrics = step(state, {'image': images})
  assert all(np.isfinite(v) for v in metrics.values())
  # The penalty is part of the critic loss: with weight 0 the loss is different.
  no_gp, m0 = jax.jit(train.train_step)(state.replace(gp_weight=0.0), {'image': images})
  _, m1 = step(state, {'image': images})
  # The penalty (||grad|| - 1)^2 is >= 0 and not exactly 0 at random interpolates: weight 10 adds to the loss.
  assert float(m1['d_loss']) > float(m0['d_loss'])
  del no_gp


def test_label_smoothing_reaches_the_discriminator_loss(setup):
  _, state, batch = setup
  _, plain = jax.jit(train.train_step)(state, batch)
  _, smoothed = jax.jit(train.train_step)(state.replace(label_smoothing=0.2), batch)
  # Real target 1 - s: BCE(x, 1 - s) = BCE(x, 1) + s * x, so the loss moves by s times D's mean real logit.
  real_logits, _ = state.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_batch_stats},
                                             batch['image'], train=True, mutable=['batch_stats'])
  assert float(smoothed['d_loss']) - float(plain['d_loss']) == pytest.approx(
      0.2 * float(jnp.mean(real_logits)), rel=1e-3, abs=1e-6)
  # Only D's real term changes, and D(x), D(G(z)) are measured before the update.
  assert float(smoothed['d_real']) == float(plain['d_real'])


def test_fused_mlp_steps_run_as_a_scan_equal_to_single_steps():
  """Without convolutions the K fused steps are one `lax.scan` (fast on XLA:CPU); the result is the same."""
  from dcgan_jax.configs import mnist_fnn  # pylint: disable=g-import-not-at-top
  config = mnist_fnn.get_config()
  config.batch_size = 8
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  fn = parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0), True)
  data = np.asarray(jax.random.randint(jax.random.key(2), (32, 28, 28, 1), 0, 256), np.uint8)
  indices = np.arange(24, dtype=np.int32).reshape(3, 8)
  state = train_state.create_train_state(config, jax.random.key(0))
  assert 'scan' in str(jax.make_jaxpr(fn)(state, data, indices))
  fused, fused_metrics = fn(jax.tree.map(jnp.copy, state), data, indices)
  single = state
  for k in range(3):
    single, metrics = fn(single, data, indices[k:k + 1])
  chex.assert_trees_all_close(fused.g_params, single.g_params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(fused.d_params, single.d_params, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(fused_metrics['d_loss'][-1], metrics['d_loss'][0], rtol=1e-5)
