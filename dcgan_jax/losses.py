"""GAN losses computed from logits, and the WGAN-GP gradient penalty.

Every loss takes raw discriminator outputs (logits or critic scores, any shape, reduced by the mean). The
cross-entropy losses never apply a sigmoid followed by a log, which loses precision and produces infinities for
confident discriminators; `softplus` is the stable form: -log(sigmoid(x)) = softplus(-x) and
-log(1 - sigmoid(x)) = softplus(x).

| name             | D (or critic) minimizes                                   | G minimizes                  |
| ---------------- | --------------------------------------------------------- | ---------------------------- |
| `non_saturating` | BCE(real, 1) + BCE(fake, 0)                               | -log D(G(z))                 |
| `minimax`        | BCE(real, 1) + BCE(fake, 0)                               | log(1 - D(G(z)))             |
| `lsgan`          | 1/2 mean((real - 1)^2) + 1/2 mean(fake^2)                 | 1/2 mean((fake - 1)^2)       |
| `hinge`          | mean(relu(1 - real)) + mean(relu(1 + fake))               | -mean(fake)                  |
| `wgan_gp`        | mean(fake) - mean(real)  (+ gp_weight * gradient_penalty) | -mean(fake)                  |
| `rpgan`          | mean(softplus(fake - real))  (relativistic pairing)       | mean(softplus(real - fake))  |
| `ragan`          | BCE(real - mean(fake), 1) + BCE(fake - mean(real), 0)     | the same with the roles swapped |

A loss is a value, `GANLoss(d=..., g=...)`, both called as `(real_logits, fake_logits) -> scalar`; G's loss sees
the real logits too (of D after its update, on the step's real batch), so relativistic losses are one line each:

    rpgan = GANLoss(d=lambda r, f: jnp.mean(jax.nn.softplus(f - r)), g=lambda r, f: jnp.mean(jax.nn.softplus(r - f)))

Pass one to `create_train_state(..., loss=rpgan)`, or name a built-in (`get(name)`; `config.loss`).

One-sided label smoothing (`label_smoothing=s`) replaces the real target 1 by 1 - s in the losses that have
targets (`non_saturating`, `minimax`, `lsgan`); fake targets stay 0 (smoothing them rewards D for calling fakes
partly real, which the one-sided form avoids). Margin and Wasserstein losses have no targets and refuse s != 0.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array


class GANLoss(NamedTuple):
  """A pair of losses and what they support. A value: compare, pass and store it like any other.

  Attributes:
    d: `d(real_logits, fake_logits) -> float32 scalar`, the discriminator's (critic's) loss; logits float [B]. When
      `label_smoothing` is set, `d` is also called with the keyword `label_smoothing=s` (a float32 scalar).
    g: `g(real_logits, fake_logits) -> float32 scalar`, the generator's loss (non-relativistic losses ignore
      `real_logits`, and the train step's compiled code then skips D's forward on the real batch).
    label_smoothing: whether `d` takes the keyword `label_smoothing` (one-sided smoothing of the real target).
    gradient_penalty: whether the train step adds `gp_weight * gradient_penalty` to `d` (WGAN-GP).
  """
  d: Callable[..., Array]
  g: Callable[[Array, Array], Array]
  label_smoothing: bool = False
  gradient_penalty: bool = False


def _bce_real(logits: Array, target: float) -> Array:
  """Mean binary cross-entropy of `logits` against the constant `target` in [0, 1]."""
  # t * -log(sigmoid(x)) + (1 - t) * -log(1 - sigmoid(x)); without smoothing the second term is exactly 0 (softplus
  # is finite for finite x), so the unsmoothed loss is unchanged. No branch: `target` may be a traced value.
  return jnp.mean(target * jax.nn.softplus(-logits) + (1.0 - target) * jax.nn.softplus(logits))


def _check_no_smoothing(name: str, label_smoothing: float) -> None:
  # Only a Python number can be checked here; the config validation rejects the combination up front anyway.
  if isinstance(label_smoothing, (int, float)) and label_smoothing:
    raise ValueError(f'the {name} loss has no targets to smooth; use label_smoothing=0 (got {label_smoothing})')


def cross_entropy_d_loss(real_logits: Array, fake_logits: Array, label_smoothing: float = 0.0) -> Array:
  """Binary cross-entropy of D: real labelled 1 - label_smoothing, fake labelled 0.

  Args:
    real_logits: float [B] (any shape), D's logits on real images.
    fake_logits: float [B] (any shape), D's logits on generated images.
    label_smoothing: s in [0, 1); the real target is 1 - s.

  Returns:
    float32 scalar >= 0 (>= the entropy of the smoothed target when s > 0).
  """
  return _bce_real(real_logits, 1.0 - label_smoothing) + jnp.mean(jax.nn.softplus(fake_logits))


def non_saturating_g_loss(fake_logits: Array) -> Array:
  """-log D(G(z)): the generator wants its samples labelled real; gradients stay large while D wins."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def minimax_g_loss(fake_logits: Array) -> Array:
  """log(1 - D(G(z))), the original (saturating) generator objective, in (-inf, 0].

  log(1 - sigmoid(x)) = log(sigmoid(-x)) = -softplus(x), exact for every finite x. Its gradient, -sigmoid(x),
  vanishes when D rejects the fakes confidently (x << 0): the saturation that `non_saturating` avoids.
  """
  return -jnp.mean(jax.nn.softplus(fake_logits))


def lsgan_d_loss(real_logits: Array, fake_logits: Array, label_smoothing: float = 0.0) -> Array:
  """Least squares on D's raw outputs (Mao et al. 2017, a=0, b=1): 1/2 E[(D(x) - b)^2] + 1/2 E[D(G(z))^2].

  Args:
    real_logits: float [B] (any shape), D's raw outputs on real images (no sigmoid).
    fake_logits: float [B] (any shape), D's raw outputs on generated images.
    label_smoothing: s in [0, 1); the real target b is 1 - s.

  Returns:
    float32 scalar >= 0.
  """
  target = 1.0 - label_smoothing
  return 0.5 * jnp.mean(jnp.square(real_logits - target)) + 0.5 * jnp.mean(jnp.square(fake_logits))


def lsgan_g_loss(fake_logits: Array) -> Array:
  """Least squares toward the real target c=1: 1/2 E[(D(G(z)) - 1)^2] >= 0."""
  return 0.5 * jnp.mean(jnp.square(fake_logits - 1.0))


def hinge_d_loss(real_logits: Array, fake_logits: Array, label_smoothing: float = 0.0) -> Array:
  """Hinge loss of D: mean(relu(1 - real)) + mean(relu(1 + fake)) >= 0; scores beyond the margin cost nothing."""
  _check_no_smoothing('hinge', label_smoothing)
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def wasserstein_d_loss(real_logits: Array, fake_logits: Array, label_smoothing: float = 0.0) -> Array:
  """The critic's loss, mean(fake) - mean(real): minus the Wasserstein-1 estimate (unbounded; add the penalty)."""
  _check_no_smoothing('wgan_gp', label_smoothing)
  return jnp.mean(fake_logits) - jnp.mean(real_logits)


def wasserstein_g_loss(fake_logits: Array) -> Array:
  """-mean(critic(G(z))), shared by the hinge and Wasserstein GANs: raise the critic's score of the fakes."""
  return -jnp.mean(fake_logits)


def gradient_penalty(critic_fn: Callable[[Array], Array], real: Array, fake: Array, key: Array) -> Array:
  """The WGAN-GP penalty (Gulrajani et al. 2017): mean over examples of (||grad_x critic(x_hat)||_2 - 1)^2.

  x_hat = eps * real + (1 - eps) * fake with one eps per example, `eps = jax.random.uniform(key, [B])`. The
  gradient is taken per example, which assumes the critic scores each example on its own: no BatchNorm in the
  critic (layer norm or none), as the paper prescribes. Differentiable in the critic's parameters (the caller
  differentiates the D loss through this, a second-order derivative).

  Args:
    critic_fn: images float [B, ...] -> scores float [B]; closes over the critic's parameters.
    real: float [B, ...], real images.
    fake: float [B, ...], generated images (the caller stops their gradient).
    key: PRNG key for eps.

  Returns:
    float32 scalar >= 0. The caller adds `config.gp_weight` times this to the critic's loss.
  """
  batch = real.shape[0]
  eps = jax.random.uniform(key, (batch,), dtype=jnp.float32)
  eps = eps.reshape((batch,) + (1,) * (real.ndim - 1))
  x_hat = eps * real.astype(jnp.float32) + (1.0 - eps) * fake.astype(jnp.float32)
  # Summing the scores gives each example's own gradient in one backward pass (examples are independent).
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x).astype(jnp.float32)))(x_hat)
  sq_norms = jnp.sum(jnp.square(grads.reshape(batch, -1)), axis=1)
  # The tiny offset (1e-10 on the norm) keeps the derivative of sqrt finite at a zero gradient (possible with ReLU
  # critics), where the second-order gradient the caller takes would otherwise be NaN.
  norms = jnp.sqrt(sq_norms + 1e-20)
  return jnp.mean(jnp.square(norms - 1.0))


def squared_gradient_norm(critic_fn: Callable[[Array], Array], x: Array) -> Array:
  """E_i ||grad_x critic(x)_i||^2: the R1 penalty's expectation on real images, R2's on fakes (Mescheder et al.
  2018); the train step adds `weight / 2` times this (StyleGAN2's gamma / 2) to D's loss.

  The gradient of the summed scores gives each example's own gradient when the critic scores examples
  independently; through a BatchNorm over the batch it is the gradient of the sum (as StyleGAN2's code takes it).
  Differentiable in the critic's parameters (the caller differentiates through it: a second-order derivative).

  Args:
    critic_fn: images float [B, ...] -> scores float [B]; closes over the critic's parameters.
    x: float [B, ...], the images (the caller stops their gradient to G).

  Returns:
    float32 scalar >= 0.
  """
  grads = jax.grad(lambda v: jnp.sum(critic_fn(v).astype(jnp.float32)))(x.astype(jnp.float32))
  return jnp.mean(jnp.sum(jnp.square(grads.reshape(x.shape[0], -1)), axis=1))


def rpgan_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Relativistic pairing GAN (Jolicoeur-Martineau 2018), D: -log sigmoid(real - fake) = softplus(fake - real),
  averaged over the pairs (real[i], fake[i]); logits float [B]. Returns a float32 scalar >= 0."""
  return jnp.mean(jax.nn.softplus(fake_logits - real_logits))


def rpgan_g_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Relativistic pairing GAN, G: softplus(real - fake), D's loss with the roles swapped; float32 scalar >= 0."""
  return jnp.mean(jax.nn.softplus(real_logits - fake_logits))


def ragan_d_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Relativistic average GAN, D: BCE(real - mean(fake), 1) + BCE(fake - mean(real), 0); float32 scalar >= 0."""
  return (jnp.mean(jax.nn.softplus(-(real_logits - jnp.mean(fake_logits))))
          + jnp.mean(jax.nn.softplus(fake_logits - jnp.mean(real_logits))))


def ragan_g_loss(real_logits: Array, fake_logits: Array) -> Array:
  """Relativistic average GAN, G: `ragan_d_loss` with real and fake swapped; float32 scalar >= 0."""
  return ragan_d_loss(fake_logits, real_logits)


def class_loss(class_logits: Array, labels: Array) -> Array:
  """The auxiliary classification loss (AC-GAN's, Odena et al. 2017): mean softmax cross-entropy of
  `class_logits` float [B, K] against `labels` int32 [B] in 0..K-1. float32 scalar >= 0."""
  logits = class_logits.astype(jnp.float32)
  return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0])


def fake_only(g_loss: Callable[[Array], Array]) -> Callable[[Array, Array], Array]:
  """A generator loss of the fake logits alone as a `GANLoss.g`: `(real_logits, fake_logits) -> g_loss(fake)`."""
  def g(real_logits: Array, fake_logits: Array) -> Array:
    del real_logits
    return g_loss(fake_logits)
  g.__name__ = g.__qualname__ = g_loss.__name__
  return g


LOSSES = {
    'non_saturating': GANLoss(d=cross_entropy_d_loss, g=fake_only(non_saturating_g_loss), label_smoothing=True),
    'minimax': GANLoss(d=cross_entropy_d_loss, g=fake_only(minimax_g_loss), label_smoothing=True),
    'lsgan': GANLoss(d=lsgan_d_loss, g=fake_only(lsgan_g_loss), label_smoothing=True),
    'hinge': GANLoss(d=hinge_d_loss, g=fake_only(wasserstein_g_loss)),
    'wgan_gp': GANLoss(d=wasserstein_d_loss, g=fake_only(wasserstein_g_loss), gradient_penalty=True),
    'rpgan': GANLoss(d=rpgan_d_loss, g=rpgan_g_loss),
    'ragan': GANLoss(d=ragan_d_loss, g=ragan_g_loss),
}
BUILTIN = tuple(LOSSES)  # The names `get` and `config.loss` accept.


def get(name: str) -> GANLoss:
  """Returns the built-in loss pair called `name` (one of `BUILTIN`, see the table above)."""
  if name not in LOSSES:
    raise KeyError(f'unknown loss {name!r}; known: {sorted(LOSSES)}')
  return LOSSES[name]


def resolve(loss: 'GANLoss | str') -> GANLoss:
  """`loss` itself if it is a `GANLoss`, else the built-in it names."""
  return loss if isinstance(loss, GANLoss) else get(loss)
