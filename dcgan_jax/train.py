"""Train state, the pure train step, sampling, and the training loop.

Public API (re-exported by `dcgan_jax`, documented in docs/api.md):
  `TrainState`, `create_train_state(config, rng, *, generator, discriminator, g_optimizer, d_optimizer, loss)`,
  `train_step(state, batch)`, `generate(state, z, *, use_batch_stats)`.

Static pieces (the two modules, the two optax transformations, the loss and the noise settings) travel as
non-pytree fields of the state, as flax's `TrainState.apply_fn` does: `train_step` then needs nothing but its two
arguments, is pure, and works under a plain `jax.jit`. The values researchers sweep are data: the learning rates
(optimizer hyperparameters, `optax.inject_hyperparams`), `label_smoothing` and `gp_weight` (arrays in the state).
Two states built from configs that differ only in those compare equal in their static fields, so they share
compiled code and stack into one population (`population.create_population`).
"""

import functools
from typing import Any, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from dcgan_jax import backend
from dcgan_jax import losses
from dcgan_jax import models
from dcgan_jax import steps
from dcgan_jax.ops.onednn import policy as onednn_policy

Array = jax.Array
PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything a GAN run carries from step to step.

  `rng` is raw key data (uint32 [2]) so that checkpoints hold plain arrays; each step derives its keys with
  `fold_in(rng, step)`, so the random stream depends only on the seed and the step number.
  """
  step: Array
  g_params: PyTree
  g_batch_stats: PyTree
  g_opt_state: optax.OptState
  d_params: PyTree
  d_batch_stats: PyTree
  d_opt_state: optax.OptState
  rng: Array
  d_updates: Array  # int32: D updates so far (the stream position of the next real batch).
  g_updates: Array  # int32: G updates so far.
  phase: Array  # int32: the adaptive schedule's turn (0: G, 1: D); 0 for the other schedules.
  phase_steps: Array  # int32: steps taken in the current adaptive phase.
  label_smoothing: Array  # float32: one-sided, on D's real targets (losses with `label_smoothing` support).
  gp_weight: Array  # float32: weight of the gradient penalty (losses with `gradient_penalty`).
  generator: nn.Module = flax.struct.field(pytree_node=False)
  discriminator: nn.Module = flax.struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  loss: losses.GANLoss = flax.struct.field(pytree_node=False, default=losses.get('non_saturating'))
  latent_dim: int = flax.struct.field(pytree_node=False, default=100)
  noise: str = flax.struct.field(pytree_node=False, default='uniform')
  # Skip (do not apply) a step whose losses or gradients are not finite, instead of stopping the run.
  skip_nonfinite: bool = flax.struct.field(pytree_node=False, default=False)


@functools.lru_cache(maxsize=None)
def _adam(b1: float, b2: float) -> optax.GradientTransformation:
  # The learning rate is a hyperparameter in the optimizer state (set by `_init_optimizer`), so configs that
  # differ only in it give the identical transformation and share compiled code.
  return optax.inject_hyperparams(optax.adam, static_args=('b1', 'b2'))(learning_rate=0.0, b1=b1, b2=b2)


def _init_optimizer(tx: optax.GradientTransformation, params: PyTree, learning_rate: float) -> optax.OptState:
  opt_state = tx.init(params)
  hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(learning_rate, jnp.float32))
  return opt_state._replace(hyperparams=hyperparams)


@functools.lru_cache(maxsize=None)
def _init_fn(module: nn.Module):
  # One compiled initializer per module (modules compare by their fields), shared by the members of a population.
  return jax.jit(lambda key, x: module.init_with_output(key, x, train=False))


sample_noise = steps.sample_noise


def _key_data(rng: Array) -> Array:
  if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return jax.random.key_data(rng)
  return jnp.asarray(rng, jnp.uint32)


def create_train_state(config: ml_collections.ConfigDict, rng: Array, *, generator: Optional[nn.Module] = None,
                       discriminator: Optional[nn.Module] = None,
                       g_optimizer: Optional[optax.GradientTransformation] = None,
                       d_optimizer: Optional[optax.GradientTransformation] = None,
                       loss: 'losses.GANLoss | str | None' = None) -> TrainState:
  """Initializes both networks and both optimizers.

  Args:
    config: a config (`dcgan_jax.configs`); gives `latent_dim`, `noise`, `label_smoothing`, `gp_weight`,
      `skip_nonfinite`, and whatever of the networks, optimizers and loss is not passed.
    rng: a typed or raw PRNG key.
    generator: any `flax.linen` module called as `generator(z, train: bool)`: z float32 [B, latent_dim] -> images
      [B, H, W, C]. Optional, detected: a `bn_axis_name` field (synchronised BatchNorm in the loop's multi-device
      step), a `deterministic` call argument (switches dropout off when sampling with batch statistics). Default:
      built from `config.model.generator` (`models.build_network`).
    discriminator: any `flax.linen` module called as `discriminator(x, train: bool)` -> logits [B] or [B, 1].
      Default: built from `config.model.discriminator`.
    g_optimizer: any `optax.GradientTransformation`. Default: Adam from `config.g_optimizer`, its learning rate an
      injected hyperparameter (data in `g_opt_state`, so populations can differ in it).
    d_optimizer: the same for D (`config.d_optimizer`).
    loss: a `losses.GANLoss` value or the name of a built-in. Default: `config.loss`.

  Returns:
    The `TrainState` at step 0.
  """
  rng = _key_data(rng)
  g_key, d_key, state_key = jax.random.split(rng, 3)
  generator = models.build_network(config, 'generator') if generator is None else generator
  discriminator = models.build_network(config, 'discriminator') if discriminator is None else discriminator
  sample, g_vars = _init_fn(generator)(g_key, jnp.zeros((1, config.latent_dim), jnp.float32))
  _, d_vars = _init_fn(discriminator)(d_key, jnp.zeros(sample.shape, jnp.float32))
  g_tx = g_optimizer if g_optimizer is not None else _adam(config.g_optimizer.b1, config.g_optimizer.b2)
  d_tx = d_optimizer if d_optimizer is not None else _adam(config.d_optimizer.b1, config.d_optimizer.b2)
  g_opt_state = (g_tx.init(g_vars['params']) if g_optimizer is not None else
                 _init_optimizer(g_tx, g_vars['params'], config.g_optimizer.learning_rate))
  d_opt_state = (d_tx.init(d_vars['params']) if d_optimizer is not None else
                 _init_optimizer(d_tx, d_vars['params'], config.d_optimizer.learning_rate))
  zero = lambda: jnp.zeros((), jnp.int32)  # One buffer per counter: the loop donates the state.
  return TrainState(
      step=zero(), g_params=g_vars['params'], g_batch_stats=g_vars.get('batch_stats', {}), g_opt_state=g_opt_state,
      d_params=d_vars['params'], d_batch_stats=d_vars.get('batch_stats', {}), d_opt_state=d_opt_state,
      rng=state_key, d_updates=zero(), g_updates=zero(), phase=zero(), phase_steps=zero(),
      label_smoothing=jnp.asarray(config.label_smoothing, jnp.float32),
      gp_weight=jnp.asarray(config.gp_weight, jnp.float32),
      generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      loss=losses.resolve(config.loss if loss is None else loss), latent_dim=config.latent_dim, noise=config.noise,
      skip_nonfinite=config.skip_nonfinite)


def with_hyperparameters(state: TrainState, source: TrainState) -> TrainState:
  """`state` with the swept values of `source`: label smoothing, gradient-penalty weight and the optimizers'
  injected hyperparameters (when both optimizer states carry them)."""
  def hyper(opt_state, src):
    if hasattr(opt_state, 'hyperparams') and hasattr(src, 'hyperparams'):
      return opt_state._replace(hyperparams=src.hyperparams)
    return opt_state
  return state.replace(label_smoothing=source.label_smoothing, gp_weight=source.gp_weight,
                       g_opt_state=hyper(state.g_opt_state, source.g_opt_state),
                       d_opt_state=hyper(state.d_opt_state, source.d_opt_state))


def train_step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One GAN training step: a D update, then a G update through the updated D. Pure; jit it.

  Args:
    state: the carried `TrainState`.
    batch: `{'image': float32 [B, H, W, C]}` in the generator's output range ([-1, 1] for tanh generators).

  Returns:
    `(new_state, metrics)`; metrics are float32 scalars: `d_loss`, `g_loss`, `d_real` = mean D(x) and `d_fake` =
    mean D(G(z)) (sigmoid of the logits, before the D update), `d_acc_real`, `d_acc_fake` (D's accuracy on each),
    `d_updates` and `g_updates` (1 and 1). A finite loss can still leave NaN or Inf parameters behind: check the
    new state with `dcgan_jax.all_finite` where it matters (the training loop does before each log, evaluation
    and checkpoint).
  """
  return steps.step(state, batch['image'][None], steps.ALTERNATING)


def d_step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One D update on `batch['image']` (as in `train_step`) and a fresh fake batch; G's parameters stay. Pure."""
  return steps.step(state, batch['image'][None], steps.D_ONLY)


def g_step(state: TrainState, batch: dict[str, Array]) -> tuple[TrainState, dict[str, Array]]:
  """One G update through the current D on fresh noise; D's parameters stay. `batch` only sets the batch size."""
  return steps.step(state, batch['image'][None], steps.G_ONLY)


def generate(state: TrainState, z: Array, *, use_batch_stats: bool = False) -> Array:
  """Images from noise `z: float32 [N, latent_dim]` -> `float32 [N, H, W, C]` in the generator's range. Pure and
  differentiable in `z` (latent inversion: `jax.grad` of a loss of `generate(state, z)`).

  Args:
    state: a `TrainState`.
    z: float32 [N, latent_dim], N >= 1.
    use_batch_stats: keyword, static. False (default): BatchNorm normalizes with the running averages gathered in
      training; each image depends on its own z only, and a single z gets a gradient. True: with the statistics of
      this batch of z (as the original TensorFlow DCGAN samples; `config.model.sample_use_batch_stats`), dropout
      off when the generator takes `deterministic`. Each image then depends on the whole batch; a single z through
      a BatchNorm over the batch alone (dense generators) is normalized away, its gradient exactly 0.

  Returns:
    float32 [N, H, W, C].
  """
  variables = {'params': state.g_params, 'batch_stats': state.g_batch_stats}
  if use_batch_stats:
    extra = {'deterministic': True} if steps.accepts(state.generator, 'deterministic') else {}
    images, _ = state.generator.apply(variables, z, train=True, mutable=['batch_stats'], **extra)
    return images
  return state.generator.apply(variables, z, train=False)


def make_parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                             device_data: bool = False, kind: steps.StepKind = steps.ALTERNATING,
                             cpu_workarounds: Optional[bool] = None):
  """Steps of `kind` data-parallel over `mesh` (axis 'data'), several per call, compiled once, state donated.

  We use `shard_map` under `jit` rather than `pmap`: the state stays one replicated global array (no stacking and
  unstacking per device), the batch is one array sharded along its batch axis, and BatchNorm can average its
  statistics over the devices (`sync_batchnorm`) or not, which plain sharding propagation cannot express.

  The returned function runs K steps in one call, so small models are not dominated by per-call dispatch. Its
  real batches come as R = K * kind.rows rows, in order (step k takes rows k * kind.rows, ...):
    * `device_data=False`: `fn(state, images)`, `images: uint8 [R, B, H, W, C]` sharded over 'data' on axis 1.
    * `device_data=True`: `fn(state, data, indices)`, `data: uint8 [N, H, W, C]` replicated on every device (put
      there once), `indices: int32 [R, B]` sharded over 'data' on axis 1; each device gathers its own images, so
      no pixels cross the host-device boundary per step.
  Kinds with a 'd_accuracy' check take one more argument, `heldout: uint8 [B, H, W, C]` sharded over 'data'.
  Images are converted to `data_range` on the device. Returns `(state, metrics)`, each metric float32 `[K]`.
  The K steps run as one `lax.scan`, except on the CPU path (`backend.cpu_workarounds(cpu_workarounds)`: the
  default on CPU) for networks with convolutions, where they are traced one after another.
  Cached: runs in one process with equal settings and the same convolution library in force (`config.cpu_conv`,
  `dcgan_jax.ops.onednn.active()`, read now) share one compiled function.
  """
  conv_library = 'onednn' if backend.cpu_workarounds(cpu_workarounds) and onednn_policy.active() else 'xla'
  return _parallel_train_step(mesh, sync_batchnorm, data_range, device_data, kind, cpu_workarounds, conv_library)


@functools.lru_cache(maxsize=None)
def _parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                         device_data: bool, kind: steps.StepKind, cpu_workarounds: Optional[bool], conv_library: str):
  """`make_parallel_train_step`, cached per settings and `conv_library` (the library the traced step will use)."""
  del conv_library  # Only a cache key: the trace reads the setting in force.
  from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top  (keeps tf out of train_step users)
  with_heldout = kind.check == 'd_accuracy'

  def run(state, *inputs):
    heldout = input_pipeline.to_float(inputs[-1], data_range) if with_heldout else None
    inputs = inputs[:-1] if with_heldout else inputs
    data, xs = inputs if device_data else (None, inputs[0])
    def body(state, rows):
      images = input_pipeline.to_float(data[rows] if device_data else rows, data_range)
      return steps.step(state, images, kind, axis_name='data', sync_batchnorm=sync_batchnorm, heldout=heldout)

    num_steps = xs.shape[0] // kind.rows
    xs = xs.reshape(num_steps, kind.rows, *xs.shape[1:])
    unroll = backend.cpu_workarounds(cpu_workarounds) and _has_convolutions(body, state, xs[0])
    if num_steps > 1 and not unroll:
      # Without convolutions a scan is fastest and compiles once for any K (MLP GAN, K=10: 1.05x one step per
      # call, where the Python loop below was 0.73x and compiled 4x longer).
      return jax.lax.scan(body, state, xs)
    # Inside a while loop (even a length-1 or unrolled scan) XLA:CPU compiles the convolutions' weight gradients
    # without their fast kernels and a DCGAN step ran ~25x slower (benchmarks/throughput.py). A Python loop traces
    # the K steps one after another; it costs compile time only.
    metrics = []
    for k in range(num_steps):
      state, m = body(state, xs[k])
      metrics.append(m)
    return state, jax.tree.map(lambda *ms: jnp.stack(ms), *metrics)

  P = jax.sharding.PartitionSpec
  batch_spec = P(None, 'data')
  in_specs = (P(), P(), batch_spec) if device_data else (P(), batch_spec)
  if with_heldout:
    in_specs += (P('data'),)
  # check_vma=False: gradients are per-device values averaged explicitly with pmean (the classic pmap semantics).
  sharded = jax.shard_map(run, mesh=mesh, in_specs=in_specs, out_specs=(P(), P()), check_vma=False)
  return jax.jit(sharded, donate_argnums=0)


def _has_convolutions(fn, *args) -> bool:
  """Whether `fn(*args)` computes any convolution (looking inside custom-VJP and other nested jaxprs)."""
  import jax.extend  # pylint: disable=g-import-not-at-top

  def search(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == 'conv_general_dilated' or (
          eqn.primitive.name == 'ffi_call' and str(eqn.params.get('target_name', '')).startswith('dcgan_onednn_')):
        return True  # XLA's convolution, or oneDNN's (config.cpu_conv): either way traced one step after another.
      if any(search(sub) for sub in jax.extend.core.jaxprs_in_params(eqn.params)):
        return True
    return False

  return search(jax.make_jaxpr(fn)(*args).jaxpr)


def discriminate(state: TrainState, images: Array) -> Array:
  """D's probability that each image is real: `images: float32 [N, H, W, C]` in the data range -> float32 [N] in
  [0, 1] (sigmoid of the logits; BatchNorm with running averages, no dropout). Pure."""
  logits = state.discriminator.apply({'params': state.d_params, 'batch_stats': state.d_batch_stats}, images,
                                     train=False)
  return jax.nn.sigmoid(logits)
