"""The update rules: D updates and G updates composed into one pure step, for every training schedule.

A step is described by a static `StepKind`: how many D updates (each on its own real batch), then how many G
updates (each on fresh noise), and, for the adaptive schedule, which check to run afterwards. Each kind traces to
straight-line code (no `lax.cond` or loops: XLA:CPU runs convolutions inside control flow on slow kernels), so a
schedule whose pattern is static stays inside one compiled call. The one exception is lazy R1/R2 regularization
(`r_every` > 1) off the CPU path, where a `lax.cond` skips the penalty on the D updates without it; on the CPU path
(`backend.cpu_workarounds`) the penalty is computed on every D update and weighted 0 on those.

Conventions shared by every kind:
  * Keys: update `u` of step `s` draws from `fold_in(rng, s)` (u = 0) or `fold_in(fold_in(rng, s), u)`, so the random
    stream depends only on the seed, the step and the position in the step.
  * The last D update and the first G update of a step share one generator forward (same noise, as the PyTorch
    DCGAN example does); every other update draws its own noise and runs its own forward.
  * Every forward in training mode updates that network's BatchNorm running averages (as PyTorch and Keras do):
    a D update moves G's statistics through its fake batch, a G update moves D's through its scoring of the fakes.
  * `state.d_updates` / `state.g_updates` count the updates of each side; the real batch of a D update is batch
    number `d_updates` of the epoch-ordered data stream (the loop relies on this to resume exactly).
  * With a DiffAugment policy (`state.diffaugment`), every batch D sees in training is augmented first (reals and
    fakes, in D and G updates, each application with its own draw from the update's D key); the R1/R2 gradients are
    taken at the images before augmentation. The WGAN-GP penalty and the adaptive schedule's check see them as is.
  * Class-conditional states (`state.num_classes` > 0) take the real batches' labels too; each fake batch's labels
    are drawn uniformly from the same key as its noise (`fold_in(z_key, _LABEL_KEY)`), so they also depend only on
    the seed and the step. Unconditional states draw nothing more and trace the same step as before.
  * With `state.class_loss_weight` (conditional states, `config.class_loss_weight` > 0) D's loss adds that weight
    times the cross-entropy of its class logits (the projection's score of every class) on the real batch against
    its labels, and G's loss the same on the fake batch against the labels it was asked for (metrics `d_class_loss`,
    `g_class_loss`).
"""

import dataclasses
import inspect
from typing import Any, Optional

import flax.linen as nn

import jax
import jax.numpy as jnp
import optax

from dcgan_jax import augment
from dcgan_jax import backend
from dcgan_jax import losses
from dcgan_jax.models import common

Array = jax.Array
PyTree = Any

# Update index of the adaptive schedule's check (any index no step reaches).
_CHECK_KEY = 1 << 20
# Folded into an update's D key for its DiffAugment draws (leaves the other streams as they were).
_AUGMENT_KEY = 1 << 21
# Folded into an update's noise key to draw its fake labels (conditional states only).
_LABEL_KEY = 1 << 22


@dataclasses.dataclass(frozen=True)
class StepKind:
  """What one step does. Static: each distinct kind compiles to its own function.

  Attributes:
    d_steps: D updates, each on its own real batch (>= 0).
    g_steps: G updates after them, each on fresh noise (>= 0); d_steps + g_steps >= 1.
    check: '' (none), 'g_fools' or 'd_accuracy' (adaptive schedule): after the updates, measure the fraction of a
      fresh batch of fakes that D calls real, or D's accuracy on a held-out real batch plus a fresh fake batch (D in
      inference mode), and advance `state.phase` when it reaches `target` or the phase has taken `cap` steps.
    target: the check's threshold, in [0, 1].
    cap: most steps in one phase (>= 1).
  """
  d_steps: int = 1
  g_steps: int = 1
  check: str = ''
  target: float = 0.0
  cap: int = 1

  @property
  def rows(self) -> int:
    """Batches of real images a step receives (G-only steps receive one, unused, so every step has a batch)."""
    return max(self.d_steps, 1)


ALTERNATING = StepKind()  # One D update, then one G update: `train.train_step`.
D_ONLY = StepKind(d_steps=1, g_steps=0)
G_ONLY = StepKind(d_steps=0, g_steps=1)


def sample_noise(rng: Array, shape: tuple[int, ...], noise: str) -> Array:
  """Noise z: float32 `shape`, uniform in [-1, 1] or standard normal."""
  if noise == 'uniform':
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)
  if noise == 'normal':
    return jax.random.normal(rng, shape)
  raise ValueError(f'unknown noise {noise!r}; use uniform or normal')


def sample_fake_labels(z_key: Array, num: int, num_classes: int) -> Array:
  """The labels of a fake batch whose noise is drawn from `z_key`: int32 [num], uniform over 0..num_classes-1,
  from `fold_in(z_key, _LABEL_KEY)` (so the noise itself is drawn as in an unconditional step)."""
  return jax.random.randint(jax.random.fold_in(z_key, _LABEL_KEY), (num,), 0, num_classes, jnp.int32)


def accepts(module: nn.Module, argument: str) -> bool:
  """Whether calling `module` accepts the keyword `argument` (e.g. 'deterministic')."""
  parameters = inspect.signature(type(module).__call__).parameters
  return argument in parameters or any(p.kind == p.VAR_KEYWORD for p in parameters.values())


def with_bn_axis(module: nn.Module, axis_name: Optional[str]) -> nn.Module:
  """`module` with its BatchNorm synchronised over `axis_name`, when it has a `bn_axis_name` field; else as is
  (plain Flax modules train with per-device statistics)."""
  if any(f.name == 'bn_axis_name' for f in dataclasses.fields(module)):
    return module.clone(bn_axis_name=axis_name)
  return module


class _Context:
  """Per-step constants: the modules (with the BatchNorm axis), the loss, the device layout and the step's key."""

  def __init__(self, state, local_batch: int, axis_name: Optional[str], sync_batchnorm: bool):
    bn_axis = axis_name if sync_batchnorm else None
    self.generator = with_bn_axis(state.generator, bn_axis)
    self.discriminator = with_bn_axis(state.discriminator, bn_axis)
    self.gan_loss = state.loss
    self.policy = state.diffaugment
    self.axis_name = axis_name
    self.local_batch = local_batch
    self.base_key = jax.random.fold_in(state.rng, state.step)

  def pmean(self, x):
    return jax.lax.pmean(x, self.axis_name) if self.axis_name else x

  def keys(self, update: int) -> tuple[Array, Array, Array, Array]:
    """(z, G dropout, D dropout, penalty) keys of one update; all but z differ per device (different images)."""
    key = self.base_key if update == 0 else jax.random.fold_in(self.base_key, update)
    z_key, g_key, d_key, gp_key = jax.random.split(key, 4)
    if self.axis_name:
      device = jax.lax.axis_index(self.axis_name)
      g_key, d_key, gp_key = (jax.random.fold_in(k, device) for k in (g_key, d_key, gp_key))
    return z_key, g_key, d_key, gp_key

  def noise(self, state, z_key: Array) -> Array:
    """This device's slice of noise drawn for the global batch: results do not depend on the device count."""
    if not self.axis_name:
      return sample_noise(z_key, (self.local_batch, state.latent_dim), state.noise)
    num_devices = jax.lax.psum(1, self.axis_name)
    z = sample_noise(z_key, (self.local_batch * num_devices, state.latent_dim), state.noise)
    start = jax.lax.axis_index(self.axis_name) * self.local_batch
    return jax.lax.dynamic_slice_in_dim(z, start, self.local_batch)

  def fake_labels(self, state, z_key: Array) -> Optional[Array]:
    """This device's slice of the fake labels of an update (int32 [local_batch], uniform over the classes, drawn
    for the global batch as the noise is), or None for an unconditional state."""
    if not state.num_classes:
      return None
    if not self.axis_name:
      return sample_fake_labels(z_key, self.local_batch, state.num_classes)
    num_devices = jax.lax.psum(1, self.axis_name)
    labels = sample_fake_labels(z_key, self.local_batch * num_devices, state.num_classes)
    start = jax.lax.axis_index(self.axis_name) * self.local_batch
    return jax.lax.dynamic_slice_in_dim(labels, start, self.local_batch)

  def g_forward(self, state, z: Array, dropout_key: Array, labels: Optional[Array] = None):
    """(fake, vjp of fake w.r.t. G's params, G's new batch_stats); `labels` for a conditional generator."""
    extra = {} if labels is None else {'labels': labels}
    def forward(g_params):
      fake, updates = self.generator.apply(
          {'params': g_params, 'batch_stats': state.g_batch_stats}, z, train=True, mutable=['batch_stats'],
          rngs={'dropout': dropout_key}, **extra)
      return fake, updates.get('batch_stats', {})
    return jax.vjp(forward, state.g_params, has_aux=True)

  def augment(self, x: Array, d_key: Array, role: int) -> Array:
    """DiffAugment of D's input `x` (the identity without a policy), drawn from the update's (per-device) D key:
    `role` 0 and 1 for the real and fake batch of a D update, 3 and 4 for the fake and real batch of a G update."""
    if not self.policy:
      return x
    return augment.apply(x, jax.random.fold_in(jax.random.fold_in(d_key, _AUGMENT_KEY), role), self.policy)

  def d_apply(self, d_params, d_batch_stats, x: Array, dropout_key: Array, call: int,
              labels: Optional[Array] = None):
    """D's logits in training mode and its new batch_stats; `call` gives each application its own dropout mask;
    `labels` for a conditional discriminator."""
    logits, updates = self._d_call(d_params, d_batch_stats, x, dropout_key, call, labels, ['batch_stats'])
    return logits, updates.get('batch_stats', {})

  def d_classify(self, d_params, d_batch_stats, x: Array, dropout_key: Array, call: int, labels: Array):
    """`d_apply`'s logits and batch_stats, and the class logits float32 [B, K] the conditional discriminator sows
    (`models.common.CLASS_LOGITS`: the projection's score of every class)."""
    logits, updates = self._d_call(d_params, d_batch_stats, x, dropout_key, call, labels,
                                   ['batch_stats', 'intermediates'])
    sown = updates.get('intermediates', {}).get(common.CLASS_LOGITS)
    if sown is None:
      raise ValueError(f'class_loss_weight > 0: the discriminator ({type(self.discriminator).__name__}) sows no '
                       f"'{common.CLASS_LOGITS}'; use a projection discriminator (the conv and mlp families) or "
                       'set config.class_loss_weight=0')
    return logits, updates.get('batch_stats', {}), sown[-1]

  def _d_call(self, d_params, d_batch_stats, x, dropout_key, call, labels, mutable):
    extra = {} if labels is None else {'labels': labels}
    logits, updates = self.discriminator.apply(
        {'params': d_params, 'batch_stats': d_batch_stats}, x, train=True, mutable=mutable,
        rngs={'dropout': jax.random.fold_in(dropout_key, call)}, **extra)
    return jnp.reshape(logits, (x.shape[0],)), updates


def _d_update(ctx: _Context, state, images: Array, fake: Array, d_key: Array, gp_key: Array,
              labels: tuple[Optional[Array], Optional[Array]] = (None, None)):
  """One D update on a real and a fake batch (`labels`: theirs, for a conditional D). Returns (state, metrics,
  averaged gradients)."""
  gan_loss = ctx.gan_loss
  real_labels, fake_labels = labels
  real_in, fake_in = ctx.augment(images, d_key, 0), ctx.augment(fake, d_key, 1)

  def loss_fn(d_params):
    extra = {}
    if state.class_loss_weight is None:
      real_logits, d_bs = ctx.d_apply(d_params, state.d_batch_stats, real_in, d_key, 0, real_labels)
    else:  # D learns to classify the real batch by its projection scores.
      real_logits, d_bs, classes = ctx.d_classify(d_params, state.d_batch_stats, real_in, d_key, 0, real_labels)
      extra['d_class_loss'] = losses.class_loss(classes, real_labels)
    fake_logits, d_bs = ctx.d_apply(d_params, d_bs, fake_in, d_key, 1, fake_labels)
    if gan_loss.label_smoothing:
      loss = gan_loss.d(real_logits, fake_logits, label_smoothing=state.label_smoothing)
    else:
      loss = gan_loss.d(real_logits, fake_logits)
    if gan_loss.gradient_penalty:
      critic = lambda x: ctx.d_apply(d_params, d_bs, x, d_key, 2, real_labels)[0]
      loss += state.gp_weight * losses.gradient_penalty(critic, images, fake, gp_key)
    loss += r_penalties(ctx, state, d_params, d_bs, images, fake, d_key, labels)
    if extra:
      loss += state.class_loss_weight * extra['d_class_loss']
    return loss, (real_logits, fake_logits, d_bs, extra)

  (loss, (real_logits, fake_logits, d_bs, extra)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.d_params)
  grads = ctx.pmean(grads)
  updates, opt_state = state.d_tx.update(grads, state.d_opt_state, state.d_params)
  state = state.replace(d_params=optax.apply_updates(state.d_params, updates), d_batch_stats=d_bs,
                        d_opt_state=opt_state, d_updates=state.d_updates + 1)
  metrics = {
      'd_loss': loss,
      'd_real': jnp.mean(jax.nn.sigmoid(real_logits)),
      'd_fake': jnp.mean(jax.nn.sigmoid(fake_logits)),
      'd_acc_real': jnp.mean((real_logits > 0).astype(jnp.float32)),
      'd_acc_fake': jnp.mean((fake_logits < 0).astype(jnp.float32)),
      **extra,
  }
  return state, metrics, grads


def r_penalties(ctx: _Context, state, d_params: PyTree, d_batch_stats: PyTree, real: Array, fake: Array,
                d_key: Array, labels: tuple[Optional[Array], Optional[Array]] = (None, None)) -> Array:
  """The R1 (on `real`) and R2 (on `fake`) penalties of one D update: `weight / 2 * E||grad_x D(x)||^2` each
  (`losses.squared_gradient_norm`, D in training mode), for the weights the state carries (None: off).

  Lazy regularization (StyleGAN2): with `state.r_every` = k > 1 they apply on the D updates whose count before the
  update (`state.d_updates`) is a multiple of k, times k, and are 0 on the others. They are added to that update's
  D loss (StyleGAN2 takes a separate optimizer step for them instead). float32 scalar; 0.0 when both are off.
  `labels`: the real and fake batches' labels, for a conditional D.
  """
  terms = [(weight, x, role) for weight, x, role in ((state.r1_weight, real, 0), (state.r2_weight, fake, 1))
           if weight is not None]
  if not terms:
    return jnp.zeros((), jnp.float32)

  def penalty():
    total = jnp.zeros((), jnp.float32)
    for weight, x, role in terms:
      # The gradient is taken at the images before DiffAugment, through the same draw as the D loss's.
      critic = lambda v, role=role: ctx.d_apply(d_params, d_batch_stats, ctx.augment(v, d_key, role), d_key,
                                                5 + role, labels[role])[0]
      total += weight / 2 * losses.squared_gradient_norm(critic, x)
    return total * state.r_every

  if state.r_every == 1:
    return penalty()
  due = state.d_updates % state.r_every == 0
  if backend.cpu_workarounds():
    return jnp.where(due, penalty(), 0.0)
  return jax.lax.cond(due, penalty, lambda: jnp.zeros((), jnp.float32))


def _g_update(ctx: _Context, state, real: Array, fake: Array, g_vjp, d_key: Array,
              labels: tuple[Optional[Array], Optional[Array]] = (None, None)):
  """One G update through the current D, from a generator forward's output and VJP (`labels`: the real and fake
  batches' labels, for a conditional D).

  G's loss also sees D's logits on `real` (training mode, its BatchNorm statistics discarded); a loss that ignores
  them costs nothing, as the compiled step drops that forward.
  """
  real_labels, fake_labels = labels
  real_in = ctx.augment(real, d_key, 4)
  real_logits = jax.lax.stop_gradient(
      ctx.d_apply(state.d_params, state.d_batch_stats, real_in, d_key, 4, real_labels)[0])

  def loss_fn(fake):
    fake_in, extra = ctx.augment(fake, d_key, 3), {}
    if state.class_loss_weight is None:
      logits, d_bs = ctx.d_apply(state.d_params, state.d_batch_stats, fake_in, d_key, 3, fake_labels)
    else:  # G learns to make fakes that D classifies as the class they were asked for.
      logits, d_bs, classes = ctx.d_classify(state.d_params, state.d_batch_stats, fake_in, d_key, 3, fake_labels)
      extra['g_class_loss'] = losses.class_loss(classes, fake_labels)
    loss = ctx.gan_loss.g(real_logits, logits)
    if extra:
      loss += state.class_loss_weight * extra['g_class_loss']
    return loss, (d_bs, extra)

  (loss, (d_bs, extra)), fake_grad = jax.value_and_grad(loss_fn, has_aux=True)(fake)
  (grads,) = g_vjp(fake_grad)
  grads = ctx.pmean(grads)
  updates, opt_state = state.g_tx.update(grads, state.g_opt_state, state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  state = state.replace(g_params=g_params, g_ema_params=update_ema(state, g_params), g_opt_state=opt_state,
                        d_batch_stats=d_bs, g_updates=state.g_updates + 1)
  return state, {'g_loss': loss, **extra}, grads


def ema_decay_at(decay: Array, g_updates: Array) -> Array:
  """The EMA's decay at its update after `g_updates` earlier G updates: min(decay, (1 + t) / (10 + t)), t =
  g_updates (TensorFlow's `ExponentialMovingAverage(num_updates=...)` warm-up: 0.1 at the first update, so the
  average forgets the random initialization quickly; `decay` from t ~ 9 / (1 - decay)). float32 scalar."""
  t = jnp.asarray(g_updates, jnp.float32)
  return jnp.minimum(jnp.asarray(decay, jnp.float32), (1.0 + t) / (10.0 + t))


def update_ema(state, g_params: PyTree) -> Optional[PyTree]:
  """`state.g_ema_params` moved toward the new `g_params`: d * ema + (1 - d) * g_params, with d =
  `ema_decay_at(state.ema_decay, state.g_updates)` (G updates before this one); None when the state has no EMA."""
  if state.g_ema_params is None:
    return None
  decay = ema_decay_at(state.ema_decay, state.g_updates)
  return jax.tree.map(lambda ema, new: decay * ema + (1.0 - decay) * new, state.g_ema_params, g_params)


def _check(ctx: _Context, state, kind: StepKind, heldout: Optional[Array]):
  """The adaptive schedule's measurement after the updates, and the phase it leads to. D in inference mode."""
  z_key, g_key, _, _ = ctx.keys(_CHECK_KEY)
  fake, _ = ctx.generator.apply({'params': state.g_params, 'batch_stats': state.g_batch_stats},
                                ctx.noise(state, z_key), train=True, mutable=['batch_stats'],
                                rngs={'dropout': g_key})
  d_vars = {'params': state.d_params, 'batch_stats': state.d_batch_stats}
  fake_logits = ctx.discriminator.apply(d_vars, fake, train=False)
  if kind.check == 'g_fools':
    rate = jnp.mean((fake_logits > 0).astype(jnp.float32))
    name = 'g_fool_rate'
  elif kind.check == 'd_accuracy':
    if heldout is None:
      raise ValueError("the 'd_accuracy' check needs a held-out batch of real images")
    real_logits = ctx.discriminator.apply(d_vars, heldout, train=False)
    rate = (jnp.mean((real_logits > 0).astype(jnp.float32)) + jnp.mean((fake_logits < 0).astype(jnp.float32))) / 2
    name = 'd_heldout_accuracy'
  else:
    raise ValueError(f'unknown check {kind.check!r}')
  rate = ctx.pmean(rate)
  phase_steps = state.phase_steps + 1
  switch = (rate >= kind.target) | (phase_steps >= kind.cap)
  state = state.replace(phase=jnp.where(switch, 1 - state.phase, state.phase),
                        phase_steps=jnp.where(switch, 0, phase_steps))
  return state, {name: rate}


def step(state, images: Array, kind: StepKind = ALTERNATING, axis_name: Optional[str] = None,
         sync_batchnorm: bool = False, heldout: Optional[Array] = None,
         labels: Optional[Array] = None) -> tuple[Any, dict[str, Array]]:
  """One step of `kind`. Pure.

  Args:
    state: a `train_state.TrainState`.
    images: float32 [kind.rows, B, H, W, C] in the data range: the real batch of each D update, in order. G's
      loss sees D's logits on the last one (in G-only steps, the batch the step receives).
    kind: the static pattern of updates.
    axis_name: inside `shard_map`, the device axis: gradients and metrics are averaged over it, and BatchNorm uses
      global statistics when `sync_batchnorm`.
    sync_batchnorm: see `axis_name`.
    heldout: float32 [B, H, W, C], real images for the 'd_accuracy' check.
    labels: int32 [kind.rows, B], the real batches' classes, for a conditional state (`state.num_classes` > 0);
      None for an unconditional one.

  Returns:
    `(new_state, metrics)`: float32 scalars; D's (`d_loss`, `d_real`, `d_fake`, `d_acc_real`, `d_acc_fake`, each the
    mean over the step's D updates, measured before each update) when d_steps > 0, `g_loss` when g_steps > 0 (and
    `d_class_loss` / `g_class_loss` with `state.class_loss_weight`), `d_updates`/`g_updates` (updates of each side in
    this step), the check's rate, and with `skip_nonfinite` `skipped` (1.0 when the step was not applied). The new
    state's finiteness is not checked here (reading every parameter and Adam moment costs ~15% of a small model's
    step): callers check `all_finite(state)` where it matters, as the loop does before logs, evaluations, checkpoints.
  """
  if images.shape[0] != kind.rows:
    raise ValueError(f'a {kind} step takes {kind.rows} batches of real images, got {images.shape[0]}')
  ctx = _Context(state, images.shape[1], axis_name, sync_batchnorm)
  real_labels = lambda row: None if labels is None else labels[row]
  old = state
  d_metrics, g_metrics, grads = [], [], []
  shared = None
  for i in range(kind.d_steps):
    z_key, g_key, d_key, gp_key = ctx.keys(i)
    fake_labels = ctx.fake_labels(state, z_key)
    fake, g_vjp, g_bs = ctx.g_forward(state, ctx.noise(state, z_key), g_key, fake_labels)
    state = state.replace(g_batch_stats=g_bs)
    state, metrics, d_grads = _d_update(ctx, state, images[i], jax.lax.stop_gradient(fake), d_key, gp_key,
                                        (real_labels(i), fake_labels))
    d_metrics.append(metrics)
    grads.append(d_grads)
    shared = (fake, g_vjp, d_key, fake_labels)
  for j in range(kind.g_steps):
    if j == 0 and shared is not None:
      fake, g_vjp, d_key, fake_labels = shared  # G has not changed since this forward.
    else:
      z_key, g_key, d_key, _ = ctx.keys(kind.d_steps + j)
      fake_labels = ctx.fake_labels(state, z_key)
      fake, g_vjp, g_bs = ctx.g_forward(state, ctx.noise(state, z_key), g_key, fake_labels)
      state = state.replace(g_batch_stats=g_bs)
    state, metrics, g_grads = _g_update(ctx, state, images[-1], fake, g_vjp, d_key,
                                        (real_labels(-1), fake_labels))
    g_metrics.append(metrics)
    grads.append(g_grads)

  if axis_name and not sync_batchnorm:
    # Per-device statistics differ; the carried running averages are their mean so every device holds the same.
    state = state.replace(g_batch_stats=ctx.pmean(state.g_batch_stats),
                          d_batch_stats=ctx.pmean(state.d_batch_stats))
  metrics = {k: jnp.mean(jnp.stack(v)) for k, v in _gather(d_metrics + g_metrics).items()}
  metrics = ctx.pmean(metrics)
  if kind.check:
    state, check_metrics = _check(ctx, state, kind, heldout)
    metrics.update(check_metrics)
  metrics['d_updates'] = jnp.float32(kind.d_steps)
  metrics['g_updates'] = jnp.float32(kind.g_steps)
  state = state.replace(step=old.step + 1)
  if old.skip_nonfinite:
    # Losses and gradients are averaged over devices, so every device takes the same decision.
    finite = jnp.all(jnp.stack([jnp.isfinite(m) for m in metrics.values()])) & all_finite(state)
    for grad in jax.tree.leaves(grads):
      finite &= jnp.all(jnp.isfinite(grad))
    kept = jax.tree.map(lambda new, prev: jnp.where(finite, new, prev), state, old)
    # The counters move on: the step's batches were consumed (the data position follows `d_updates`).
    state = kept.replace(step=state.step, d_updates=state.d_updates, g_updates=state.g_updates,
                         phase=state.phase, phase_steps=state.phase_steps)
    # Skipped steps report zeros, so averages over a window stay finite; `skipped` counts them.
    metrics = jax.tree.map(lambda m: jnp.where(finite, m, 0.0), metrics)
    metrics['skipped'] = 1.0 - finite.astype(jnp.float32)
  return state, metrics


def all_finite(state) -> Array:
  """Whether every parameter, BatchNorm statistic and optimizer state of `state` is finite: a bool scalar, one
  reduction per array (cheap next to a step)."""
  trees = (state.g_params, state.g_batch_stats, state.g_opt_state, state.d_params, state.d_batch_stats,
           state.d_opt_state, state.g_ema_params)
  checks = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(trees)
            if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(checks)) if checks else jnp.bool_(True)


def _gather(dicts: list[dict[str, Array]]) -> dict[str, list[Array]]:
  out: dict[str, list[Array]] = {}
  for d in dicts:
    for k, v in d.items():
      out.setdefault(k, []).append(v)
  return out
