"""GAN losses computed from logits.

Every loss takes raw discriminator outputs (logits, any shape, reduced by the mean) and never applies a sigmoid
followed by a log, which loses precision and produces infinities for confident discriminators; `softplus` is the
stable form: -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


class GANLoss(NamedTuple):
  """A pair of losses: `d(real_logits, fake_logits)` and `g(fake_logits)`, each a float32 scalar."""
  d: Callable[[jax.Array, jax.Array], jax.Array]
  g: Callable[[jax.Array], jax.Array]


def non_saturating_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Binary cross-entropy of D: real labelled 1, fake labelled 0. Logits: float [B] (any shape)."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits: jax.Array) -> jax.Array:
  """-log D(G(z)): the generator wants its samples labelled real; gradients stay large while D wins."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


LOSSES = {
    'non_saturating': GANLoss(d=non_saturating_d_loss, g=non_saturating_g_loss),
}


def get(name: str) -> GANLoss:
  """Returns the loss pair called `name` (a key of `LOSSES`)."""
  if name not in LOSSES:
    raise KeyError(f'unknown loss {name!r}; known: {sorted(LOSSES)}')
  return LOSSES[name]
