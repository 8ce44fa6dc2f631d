"""The GAN losses equal their closed forms on hand-made logits and stay finite where sigmoid-then-log does not."""

import math

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
  np.testing.assert_allclose(losses.get('non_saturating').g(jnp.asarray(fake)), expected, rtol=1e-6)
  # At logit 0 (D undecided) the loss is log 2 exactly.
  np.testing.assert_allclose(losses.get('non_saturating').g(jnp.zeros(4)), math.log(2), rtol=1e-7)


def test_losses_are_finite_for_confident_discriminators():
  # sigmoid(-200) underflows to 0 in float32; log(0) would be -inf. The logit form gives the exact value 200.
  g = losses.get('non_saturating').g(jnp.array([-200.0]))
  d = losses.get('non_saturating').d(jnp.array([-200.0]), jnp.array([200.0]))
  np.testing.assert_allclose(g, 200.0, rtol=1e-6)
  np.testing.assert_allclose(d, 400.0, rtol=1e-6)


def test_unknown_loss_names_the_known_ones():
  with pytest.raises(KeyError, match='non_saturating'):
    losses.get('wgan')
