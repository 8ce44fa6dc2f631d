"""DiffAugment (`config.diffaugment`, dcgan_jax/augment.py): each transformation's exact effect and value range,
gradients through it, the train step with it (deterministic, identity when off), validation, and an exact resume of
a run with every option of the toolbox on (EMA, lazy R1, DiffAugment)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

import conftest
from dcgan_jax import augment
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax.trainer import loop
from dcgan_jax import train
from dcgan_jax import train_state

KEY = jax.random.key(7)


def _known(b=6, h=28, w=28, c=1):
  """Images with no zero pixel, every pixel distinct: 1 .. B*H*W*C, scaled into (0, 1]."""
  return jnp.arange(1, b * h * w * c + 1, dtype=jnp.float32).reshape(b, h, w, c) / (b * h * w * c)


def test_off_is_the_identity():
  x = _known()
  assert augment.apply(x, KEY, '') is x
  assert augment.parse('') == () and augment.parse(' color , cutout ') == ('color', 'cutout')


def test_translate_moves_a_known_image_exactly():
  x = np.asarray(_known(2, 5, 6))
  out = np.asarray(augment.translate(jnp.asarray(x), jnp.asarray([2, -1]), jnp.asarray([-3, 0])))
  expected = np.zeros_like(x)
  expected[0, 2:, :3] = x[0, :3, 3:]  # down 2, left 3
  expected[1, :4, :] = x[1, 1:, :]  # up 1
  np.testing.assert_array_equal(out, expected)


def test_translation_with_a_fixed_key_is_an_exact_shift_within_the_range():
  x = _known()
  out = np.asarray(augment.translation(x, KEY))
  np.testing.assert_array_equal(out, np.asarray(augment.translation(x, KEY)))  # Same key, same draw.
  r = augment.max_shift(28)
  assert r == 4
  shifts = []
  for b in range(x.shape[0]):
    matches = [(dh, dw) for dh in range(-r, r + 1) for dw in range(-r, r + 1)
               if np.array_equal(out[b], np.asarray(augment.translate(x[b:b + 1], jnp.asarray([dh]),
                                                                       jnp.asarray([dw])))[0])]
    assert len(matches) == 1
    shifts.append(matches[0])
  assert len(set(shifts)) > 1  # Drawn per image.
  assert set(np.unique(out)) <= set(np.unique(np.asarray(x))) | {0.0}


def test_cutout_zeroes_one_clipped_square_per_image():
  x = _known()
  out = np.asarray(augment.cutout(x, KEY))
  size = augment.cutout_size(28)
  assert size == 14
  for b in range(x.shape[0]):
    zero = out[b, :, :, 0] == 0
    rows, cols = np.nonzero(zero.any(axis=1))[0], np.nonzero(zero.any(axis=0))[0]
    assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
    box = np.zeros_like(zero)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    np.testing.assert_array_equal(zero, box)  # One axis-aligned rectangle.
    assert len(rows) == size or rows[0] == 0 or rows[-1] == 27  # Smaller only where clipped at an edge.
    np.testing.assert_array_equal(out[b][~zero], np.asarray(x[b])[~zero])  # The rest unchanged.


def test_color_is_a_per_image_affine_map_of_grayscale_with_contrast_in_range():
  x = jax.random.uniform(jax.random.key(0), (5, 28, 28, 1), minval=-1, maxval=1)
  out = np.asarray(augment.color(x, KEY), np.float64)
  xs = np.asarray(x, np.float64)
  for b in range(5):
    # Grayscale: saturation is the identity, so out = alpha * x + beta, alpha = contrast factor in [0.5, 1.5].
    alpha, beta = np.polyfit(xs[b].ravel(), out[b].ravel(), 1)
    np.testing.assert_allclose(out[b], alpha * xs[b] + beta, atol=1e-5)
    assert 0.5 <= alpha <= 1.5
    # Brightness in [-0.5, 0.5] shifts the image mean by that much; contrast keeps the mean.
    assert abs(out[b].mean() - xs[b].mean()) <= 0.5 + 1e-6


def test_color_keeps_rgb_channel_structure():
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 3), minval=-1, maxval=1)
  out = np.asarray(augment.color(x, KEY), np.float64)
  assert out.shape == (3, 8, 8, 3) and np.all(np.isfinite(out))
  # Saturation keeps each pixel's channel mean, so the channel-mean image is an affine map of the input's.
  for b in range(3):
    m_in, m_out = np.asarray(x[b], np.float64).mean(-1).ravel(), out[b].mean(-1).ravel()
    alpha, beta = np.polyfit(m_in, m_out, 1)
    np.testing.assert_allclose(m_out, alpha * m_in + beta, atol=1e-5)


def test_gradients_flow_through_every_policy():
  x = jax.random.uniform(jax.random.key(0), (4, 28, 28, 1), minval=-1, maxval=1)
  for policy in ('color', 'translation', 'cutout', 'color,translation,cutout'):
    grad = jax.grad(lambda v: jnp.sum(augment.apply(v, KEY, policy) ** 2))(x)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.max(jnp.abs(grad))) > 0.1, policy


def test_unknown_names_are_refused_in_one_line():
  with pytest.raises(ValueError, match="unknown DiffAugment transformation 'flip'"):
    augment.parse('translation,flip')
  config = conftest.tiny_config()
  config.diffaugment = 'color,color'
  with pytest.raises(errors.ConfigError, match=r"config.diffaugment='color,color': DiffAugment policy 'color,color' "
                                               'names a transformation twice'):
    config_validation.validate(config)


def _images():
  return jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)


def test_train_step_with_diffaugment_is_deterministic_and_trains_g_through_it(config):
  config.diffaugment = 'color,translation,cutout'
  state = train_state.create_train_state(config, jax.random.key(0))
  assert state.diffaugment == 'color,translation,cutout'
  step = jax.jit(train.train_step)
  new, metrics = step(state, {'image': _images()})
  again, metrics_again = step(state, {'image': _images()})
  chex.assert_trees_all_equal((new, metrics), (again, metrics_again))
  assert all(bool(jnp.isfinite(v)) for v in metrics.values())
  plain, plain_metrics = step(state.replace(diffaugment=''), {'image': _images()})
  assert float(metrics['d_loss']) != pytest.approx(float(plain_metrics['d_loss']), abs=1e-6)
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.g_params, state.g_params)
  assert max(jax.tree.leaves(moved)) > 0 and all(np.isfinite(jax.tree.leaves(moved)))


def _run(config, workdir, steps):
  config.num_train_steps = steps
  with tfds.testing.mock_data(num_examples=32):
    return loop.train_and_evaluate(config, workdir)


def test_a_resumed_run_with_ema_lazy_r1_diffaugment_and_spectral_norm_is_bit_identical(tmp_path):
  config = conftest.tiny_config()
  config.ema_decay, config.r1_weight, config.r_every = 0.9, 1.0, 2
  config.diffaugment = 'color,translation,cutout'
  config.model.discriminator.spectral_norm = True  # Its power iteration's state is checkpointed in batch_stats.
  straight = _run(config.copy_and_resolve_references(), str(tmp_path / 'a'), 4)
  _run(config.copy_and_resolve_references(), str(tmp_path / 'b'), 2)
  resumed = _run(config.copy_and_resolve_references(), str(tmp_path / 'b'), 4)
  assert int(resumed.step) == 4
  fields = lambda s: jax.device_get((s.g_params, s.d_params, s.g_ema_params, s.g_opt_state, s.d_opt_state,
                                     s.d_batch_stats))
  assert set(resumed.d_batch_stats) == {'BatchNorm_0', 'BatchNorm_1', 'SpectralNorm_0', 'SpectralNorm_1',
                                        'SpectralNorm_2'}
  chex.assert_trees_all_equal(fields(resumed), fields(straight))


_SHARDED = """
import json, jax, jax.numpy as jnp, numpy as np
import conftest
from dcgan_jax import parallel
from dcgan_jax import train
from dcgan_jax import train_state
config = conftest.tiny_config()
config.ema_decay, config.r1_weight, config.r2_weight, config.r_every = 0.9, 1.0, 0.5, 2
config.diffaugment = 'color,translation,cutout'
config.model.discriminator.spectral_norm = True
state = train_state.create_train_state(config, jax.random.key(0))
images = jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)
mesh = jax.make_mesh((2,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
P = jax.sharding.PartitionSpec
sharded = jax.device_put(images, jax.sharding.NamedSharding(mesh, P('data')))
step = jax.jit(train.train_step)
one, m1 = step(state, {'image': images})
many, m2 = step(state, {'image': sharded})
diff = [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many))]
fn = parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0))
rows = jax.device_put(jax.random.randint(jax.random.key(3), (2, 8, 28, 28, 1), 0, 256).astype(jnp.uint8),
                      jax.sharding.NamedSharding(mesh, P(None, 'data')))
par, m = fn(jax.device_put(state, jax.sharding.NamedSharding(mesh, P())), rows)
print(json.dumps({'diff': max(diff), 'finite': bool(all(np.all(np.isfinite(v)) for v in m.values())),
                  'ema': float(np.max(np.abs(np.asarray(jax.tree.leaves(par.g_ema_params)[0])))),
                  'steps': int(par.step)}))
"""


@pytest.mark.slow
def test_every_option_on_a_batch_sharded_over_two_devices():
  import json, os, subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  env = conftest.subprocess_env(num_devices=2)
  env['PYTHONPATH'] = str(conftest.ROOT / 'tests') + os.pathsep + env['PYTHONPATH']
  proc = subprocess.run([sys.executable, '-c', _SHARDED], capture_output=True, text=True, env=env,
                        cwd=conftest.ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result['diff'] < 1e-5  # jit on a sharded batch computes the one-device step.
  assert result['finite'] and result['ema'] > 0 and result['steps'] == 2
