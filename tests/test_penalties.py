"""R1 / R2 gradient penalties (`config.r1_weight`, `r2_weight`, `r_every`): the penalty against analytic gradients
and finite differences, its weight and placement in D's loss with discriminators whose input gradient is known,
the lazy schedule on both code paths, validation and populations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import conftest
import dcgan_jax
from dcgan_jax import backend
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import losses
from dcgan_jax import train
from dcgan_jax import train_state


def test_squared_gradient_norm_is_exact_for_a_quadratic_critic():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 4, 2)), jnp.float32)
  a, b = 0.7, jnp.linspace(-1, 1, 32).reshape(4, 4, 2)
  critic = lambda v: jnp.sum(0.5 * a * v ** 2 + b * v, axis=(1, 2, 3))  # grad: a * x + b
  expected = np.mean(np.sum(np.square(a * np.asarray(x) + np.asarray(b)), axis=(1, 2, 3)))
  np.testing.assert_allclose(losses.squared_gradient_norm(critic, x), expected, rtol=1e-6)


def test_squared_gradient_norm_matches_finite_differences():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(2 * 3 * 3, 5)).astype(np.float32)
  critic = lambda v: jnp.sum(jnp.tanh(v.reshape(v.shape[0], -1) @ w), axis=1)
  x = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
  eps = 1e-3
  grads = np.zeros((2, x[0].size))
  for i in range(2):
    for j in range(x[0].size):
      up, down = x.copy(), x.copy()
      up[i].flat[j] += eps
      down[i].flat[j] -= eps
      grads[i, j] = (float(critic(up)[i]) - float(critic(down)[i])) / (2 * eps)
  np.testing.assert_allclose(losses.squared_gradient_norm(critic, jnp.asarray(x)),
                             np.mean(np.sum(grads ** 2, axis=1)), rtol=2e-3)


class _QuadraticD(nn.Module):
  """logits_i = a / 2 * sum(x_i^2): grad_x = a * x_i, ||grad||^2 = a^2 * sum(x_i^2)."""

  @nn.compact
  def __call__(self, x, train: bool):
    a = self.param('a', nn.initializers.constant(0.3), ())
    return 0.5 * a * jnp.sum(jnp.square(x.reshape(x.shape[0], -1)), axis=1)


class _ConstantG(nn.Module):
  """Every image is the parameter c (0.5 everywhere at init), whatever z."""

  @nn.compact
  def __call__(self, z, train: bool):
    c = self.param('c', nn.initializers.constant(0.5), (28, 28, 1))
    return jnp.broadcast_to(c, (z.shape[0], 28, 28, 1))


def _config(r1=0.0, r2=0.0, every=1):
  config = conftest.tiny_config()
  config.r1_weight, config.r2_weight, config.r_every = r1, r2, every
  return config


def _images():
  return jax.random.uniform(jax.random.key(1), (8, 28, 28, 1), minval=-1, maxval=1)


def _d_loss(state, d_updates=0):
  # A fresh function per call: the lazy schedule's code path is chosen when the step is traced.
  step = jax.jit(lambda s, b: train.d_step(s, b))
  _, metrics = step(state.replace(d_updates=jnp.int32(d_updates)), {'image': _images()})
  return float(metrics['d_loss'])


@pytest.mark.parametrize('r1, r2', [(2.0, 0.0), (0.0, 3.0), (2.0, 3.0)])
def test_penalties_in_d_loss_equal_the_analytic_values(r1, r2):
  state = train_state.create_train_state(_config(r1, r2), jax.random.key(0), generator=_ConstantG(),
                                   discriminator=_QuadraticD())
  assert (state.r1_weight is None) == (r1 == 0) and (state.r2_weight is None) == (r2 == 0)
  plain = state.replace(r1_weight=None, r2_weight=None)
  a2 = 0.3 ** 2
  real = np.asarray(_images(), np.float64)
  expected = (r1 / 2 * a2 * np.mean(np.sum(real ** 2, axis=(1, 2, 3)))  # R1 on the real batch
              + r2 / 2 * a2 * 28 * 28 * 0.25)  # R2 on the fakes, 0.5 everywhere
  np.testing.assert_allclose(_d_loss(state) - _d_loss(plain), expected, rtol=1e-4)


@pytest.mark.parametrize('cpu_path', [True, False])
def test_lazy_schedule_applies_on_multiples_of_r_every_scaled_by_it(cpu_path, monkeypatch):
  monkeypatch.setenv(backend.ENV_VAR, '1' if cpu_path else '0')
  state = train_state.create_train_state(_config(r1=2.0, every=3), jax.random.key(0), generator=_ConstantG(),
                                   discriminator=_QuadraticD())
  assert state.r_every == 3
  plain = state.replace(r1_weight=None)
  full = 3 * 2.0 / 2 * 0.3 ** 2 * np.mean(np.sum(np.asarray(_images(), np.float64) ** 2, axis=(1, 2, 3)))
  for d_updates, applies in [(0, True), (1, False), (2, False), (3, True), (7, False), (9, True)]:
    diff = _d_loss(state, d_updates) - _d_loss(plain, d_updates)
    np.testing.assert_allclose(diff, full if applies else 0.0, rtol=1e-4, atol=1e-6)
  # Under vmap (a population whose members are at different D updates) the cond becomes a select: same values.
  stack = lambda st: jax.tree.map(lambda *leaves: jnp.stack(leaves),
                                  *[st.replace(d_updates=jnp.int32(u)) for u in (0, 1, 3)])
  step = jax.jit(jax.vmap(lambda st, b: train.d_step(st, b), in_axes=(0, None)))
  diff = step(stack(state), {'image': _images()})[1]['d_loss'] - step(stack(plain), {'image': _images()})[1]['d_loss']
  np.testing.assert_allclose(diff, [full, 0.0, full], rtol=1e-4, atol=1e-6)


def test_r1_gradient_moves_a_linear_d_toward_zero_input_gradient():
  # Linear D: the R1 term is gamma/2 ||w||^2, whose gradient is gamma * w (the loss's own gradient is the same with
  # and without it otherwise): with SGD the updates differ by exactly lr * gamma * w.
  class LinearD(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool):
      return nn.Dense(1)(x.reshape(x.shape[0], -1))

  import optax  # pylint: disable=g-import-not-at-top
  state = train_state.create_train_state(_config(r1=4.0), jax.random.key(0), discriminator=LinearD(),
                                   d_optimizer=optax.sgd(0.1))
  plain = state.replace(r1_weight=None)
  step = jax.jit(lambda s, b: train.d_step(s, b))
  with_r1 = step(state, {'image': _images()})[0].d_params['Dense_0']['kernel']
  without = step(plain, {'image': _images()})[0].d_params['Dense_0']['kernel']
  w = state.d_params['Dense_0']['kernel']
  np.testing.assert_allclose(without - with_r1, 0.1 * 4.0 * w, rtol=1e-3, atol=1e-7)


def test_validation_one_line_per_bad_value():
  config = _config()
  config.r1_weight, config.r2_weight, config.r_every = -1.0, float('nan'), 0
  with pytest.raises(errors.ConfigError) as info:
    config_validation.validate(config)
  lines = str(info.value).splitlines()[1:]
  assert [line.strip() for line in lines] == [
      'config.r1_weight=-1.0: must be a finite number >= 0 (0 switches it off)',
      'config.r2_weight=nan: must be a finite number >= 0 (0 switches it off)',
      'config.r_every=0: must be an integer > 0']


def test_population_sweeps_r1_under_vmap():
  config = _config(r1=1.0, every=2)
  population = dcgan_jax.create_population(config, [0, 0], r1_weight=[1.0, 5.0])
  _, metrics = jax.jit(jax.vmap(train.d_step, in_axes=(0, None)))(population, {'image': _images()})
  for i, weight in enumerate([1.0, 5.0]):
    single = train_state.create_train_state(_config(r1=weight, every=2), jax.random.key(0))
    _, m = jax.jit(train.d_step)(single, {'image': _images()})
    np.testing.assert_allclose(float(metrics['d_loss'][i]), float(m['d_loss']), rtol=1e-4)
  assert float(metrics['d_loss'][1]) > float(metrics['d_loss'][0])
  with pytest.raises(ValueError, match=r'r2_weight=\[0.0, 1.0\] switches its option off'):
    dcgan_jax.create_population(config, [0, 1], r2_weight=[0.0, 1.0])
