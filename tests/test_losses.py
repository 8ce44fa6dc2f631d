"""The GAN losses equal their closed forms on hand-made logits and stay finite where sigmoid-then-log does not."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dcgan_jax import losses


def _bce(p, label):
  return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_non_saturating_d_loss_is_binary_cross_entropy():
  real, fake = np.array([2.0, -1.0]), np.array([0.5, -3.0])
  sig = lambda x: 1 / (1 + math.exp(-x))
  expected = np.mean([_bce(sig(x), 1) for x in real]) + np.mean([_bce(sig(x), 0) for x in fake])
  got = losses.get('non_saturating').d(jnp.asarray(real), jnp.asarray(fake))
  np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_non_saturating_g_loss_is_minus_log_d_of_fake():
  fake = np.array([0.0, 1.0, -2.0])
  expected = np.mean([-math.log(1 / (1 + math.exp(-x))) for x in fake])
  np.testing.assert_allclose(losses.get('non_saturating').g(jnp.zeros(1), jnp.asarray(fake)), expected, rtol=1e-6)
  # At logit 0 (D undecided) the loss is log 2 exactly.
  np.testing.assert_allclose(losses.get('non_saturating').g(jnp.zeros(1), jnp.zeros(4)), math.log(2), rtol=1e-7)


def test_losses_are_finite_for_confident_discriminators():
  # sigmoid(-200) underflows to 0 in float32; log(0) would be -inf. The logit form gives the exact value 200.
  g = losses.get('non_saturating').g(jnp.zeros(1), jnp.array([-200.0]))
  d = losses.get('non_saturating').d(jnp.array([-200.0]), jnp.array([200.0]))
  np.testing.assert_allclose(g, 200.0, rtol=1e-6)
  np.testing.assert_allclose(d, 400.0, rtol=1e-6)


def test_unknown_loss_names_the_known_ones():
  with pytest.raises(KeyError, match='non_saturating'):
    losses.get('wgan')


# The other losses, label smoothing and the gradient penalty.

_REAL, _FAKE = np.array([2.0, -1.0]), np.array([0.5, -3.0])


def _sig(x):
  return 1 / (1 + math.exp(-x))


def _d(name, real=_REAL, fake=_FAKE, **kwargs):
  return float(losses.get(name).d(jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32), **kwargs))


def _g(name, fake=_FAKE):
  return float(losses.get(name).g(jnp.zeros(1), jnp.asarray(fake, jnp.float32)))


@pytest.mark.parametrize('name,d_expected,g_expected', [
    # minimax: D is the cross-entropy; G minimizes log(1 - D(G(z))).
    ('minimax', np.mean([_bce(_sig(x), 1) for x in _REAL]) + np.mean([_bce(_sig(x), 0) for x in _FAKE]),
     np.mean([math.log(1 - _sig(x)) for x in _FAKE])),
    # lsgan: 1/2 mean((r - 1)^2) + 1/2 mean(f^2) = 1/2 * 5/2 + 1/2 * 9.25/2; G 1/2 mean((f - 1)^2) = 1/2 * 16.25/2.
    ('lsgan', 3.5625, 4.0625),
    # hinge: mean(relu(1 - r)) = (0 + 2)/2, mean(relu(1 + f)) = (1.5 + 0)/2; G -mean(f) = 1.25.
    ('hinge', 1.75, 1.25),
    # wgan_gp: mean(f) - mean(r) = -1.25 - 0.5; G -mean(f).
    ('wgan_gp', -1.75, 1.25),
])
def test_losses_equal_their_closed_forms(name, d_expected, g_expected):
  np.testing.assert_allclose(_d(name), d_expected, rtol=1e-6)
  np.testing.assert_allclose(_g(name), g_expected, rtol=1e-6)


def test_minimax_g_loss_is_stable_and_saturates():
  # log(1 - sigmoid(x)) for x = 200 is -200 exactly in the softplus form; naively log(0) = -inf.
  np.testing.assert_allclose(_g('minimax', np.array([200.0])), -200.0, rtol=1e-6)
  # Saturation: when D rejects fakes confidently the minimax gradient vanishes, the non-saturating one does not.
  grad = lambda name: float(jax.grad(losses.get(name).g, argnums=1)(jnp.zeros(1), jnp.array([-10.0]))[0])
  assert abs(grad('minimax')) < 1e-4 and abs(grad('non_saturating') + 1.0) < 1e-4


@pytest.mark.parametrize('name,real_term', [
    ('non_saturating', lambda r, s: np.mean([_bce(_sig(x), 1 - s) for x in r])),
    ('minimax', lambda r, s: np.mean([_bce(_sig(x), 1 - s) for x in r])),
    ('lsgan', lambda r, s: 0.5 * np.mean((r - (1 - s)) ** 2)),
])
def test_label_smoothing_changes_only_the_real_term(name, real_term):
  s = 0.1
  np.testing.assert_allclose(_d(name, label_smoothing=s) - _d(name), real_term(_REAL, s) - real_term(_REAL, 0.0),
                             rtol=1e-5)
  # The fake term and its gradient are untouched.
  fake_grad = lambda smoothing: jax.grad(lambda f: losses.get(name).d(jnp.asarray(_REAL), f, smoothing))(
      jnp.asarray(_FAKE))
  np.testing.assert_array_equal(fake_grad(s), fake_grad(0.0))
  assert losses.get(name).label_smoothing


@pytest.mark.parametrize('name', ['hinge', 'wgan_gp'])
def test_losses_without_targets_refuse_label_smoothing(name):
  assert not losses.get(name).label_smoothing
  with pytest.raises(ValueError, match='no targets'):
    _d(name, label_smoothing=0.1)


def test_gradient_penalty_of_a_linear_critic_is_known_in_closed_form():
  # critic(x) = sum(w * x): its gradient is w everywhere, so the penalty is (||w|| - 1)^2 whatever the mix.
  w = jnp.asarray(np.array([1.0, 2.0, 2.0, 0.0], np.float32).reshape(1, 2, 2, 1))  # ||w|| = 3.
  critic = lambda w: (lambda x: jnp.sum(w * x, axis=(1, 2, 3)))
  real = jax.random.normal(jax.random.key(0), (5, 2, 2, 1))
  fake = jax.random.normal(jax.random.key(1), (5, 2, 2, 1))
  penalty = lambda w: losses.gradient_penalty(critic(w), real, fake, jax.random.key(2))
  np.testing.assert_allclose(penalty(w), 4.0, rtol=1e-6)
  # Second order, as the critic's update takes it: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||.
  np.testing.assert_allclose(jax.grad(penalty)(w), 2 * 2 * w / 3, rtol=1e-5)
  # A zero gradient (a constant critic) gives (0 - 1)^2 = 1 and finite second-order gradients.
  flat = lambda w: losses.gradient_penalty(lambda x: jnp.sum(0 * w * x, axis=(1, 2, 3)), real, fake,
                                           jax.random.key(2))
  np.testing.assert_allclose(flat(w), 1.0, rtol=1e-6)
  assert np.all(np.isfinite(jax.grad(flat)(w)))


def test_gradient_penalty_of_a_nonlinear_critic_matches_finite_differences():
  rng = np.random.default_rng(0)
  a, v = rng.normal(size=(6, 3)), rng.normal(size=3)
  real, fake = rng.normal(size=(4, 3, 2, 1)), rng.normal(size=(4, 3, 2, 1))
  key = jax.random.key(3)

  def critic_np(x):  # float64 [6] -> scalar
    return float(np.tanh(x @ a) @ v)

  # The documented mix: one eps per example, jax.random.uniform(key, [B]).
  eps = np.asarray(jax.random.uniform(key, (4,)), np.float64).reshape(4, 1, 1, 1)
  x_hat = (eps * real + (1 - eps) * fake).reshape(4, 6)
  h = 1e-6
  norms = []
  for x in x_hat:
    grad = [(critic_np(x + h * e) - critic_np(x - h * e)) / (2 * h) for e in np.eye(6)]
    norms.append(np.linalg.norm(grad))
  expected = np.mean((np.array(norms) - 1) ** 2)

  critic = lambda x: jnp.tanh(x.reshape(x.shape[0], 6) @ jnp.asarray(a, jnp.float32)) @ jnp.asarray(v, jnp.float32)
  got = losses.gradient_penalty(critic, jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32), key)
  np.testing.assert_allclose(got, expected, rtol=1e-4)
