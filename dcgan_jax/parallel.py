"""Data-parallel training: the train step over all devices (and hosts) of a mesh, several steps per compiled call.

`make_parallel_train_step` is what the training loop runs; research code can call it too (docs/api.md, "Several
devices").
"""

import functools
from typing import Optional

import jax
import jax.numpy as jnp

from dcgan_jax import backend
from dcgan_jax import steps
from dcgan_jax.ops.onednn import policy as onednn_policy


def make_parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                             device_data: bool = False, kind: steps.StepKind = steps.ALTERNATING,
                             cpu_workarounds: Optional[bool] = None, conditional: bool = False):
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
  `conditional` (a state with `num_classes` > 0): the labels come too, `fn(state, images, labels)` with
  `labels: int32 [R, B]` sharded like the images, or `fn(state, data, labels, indices)` with `labels: int32 [N]`
  replicated beside `data`.
  Images are converted to `data_range` on the device. Returns `(state, metrics)`, each metric float32 `[K]`.
  The K steps run as one `lax.scan`, except on the CPU path (`backend.cpu_workarounds(cpu_workarounds)`: the
  default on CPU) for networks with convolutions, where they are traced one after another.
  Cached: runs in one process with equal settings and the same convolution library in force (`config.cpu_conv`,
  `dcgan_jax.ops.onednn.active()`, read now) share one compiled function.
  """
  conv_library = 'onednn' if backend.cpu_workarounds(cpu_workarounds) and onednn_policy.active() else 'xla'
  return _parallel_train_step(mesh, sync_batchnorm, data_range, device_data, kind, cpu_workarounds, conditional,
                              conv_library)


@functools.lru_cache(maxsize=None)
def _parallel_train_step(mesh: jax.sharding.Mesh, sync_batchnorm: bool, data_range: tuple[float, float],
                         device_data: bool, kind: steps.StepKind, cpu_workarounds: Optional[bool], conditional: bool,
                         conv_library: str):
  """`make_parallel_train_step`, cached per settings and `conv_library` (the library the traced step will use)."""
  del conv_library  # Only a cache key: the trace reads the setting in force.
  from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top  (keeps tf out of train_step users)
  with_heldout = kind.check == 'd_accuracy'

  def run(state, *inputs):
    heldout = input_pipeline.to_float(inputs[-1], data_range) if with_heldout else None
    inputs = inputs[:-1] if with_heldout else inputs
    if device_data:
      data, all_labels, xs = inputs if conditional else (inputs[0], None, inputs[1])
    else:
      data, all_labels, xs = None, None, (tuple(inputs) if conditional else inputs[0])

    def body(state, rows):
      if device_data:
        images, labels = data[rows], (None if all_labels is None else all_labels[rows])
      else:
        images, labels = rows if conditional else (rows, None)
      images = input_pipeline.to_float(images, data_range)
      return steps.step(state, images, kind, axis_name='data', sync_batchnorm=sync_batchnorm, heldout=heldout,
                        labels=labels)

    num_steps = jax.tree.leaves(xs)[0].shape[0] // kind.rows
    xs = jax.tree.map(lambda a: a.reshape(num_steps, kind.rows, *a.shape[1:]), xs)
    row = lambda k: jax.tree.map(lambda a: a[k], xs)
    unroll = backend.cpu_workarounds(cpu_workarounds) and _has_convolutions(body, state, row(0))
    if num_steps > 1 and not unroll:
      # Without convolutions a scan is fastest and compiles once for any K (MLP GAN, K=10: 1.05x one step per
      # call, where the Python loop below was 0.73x and compiled 4x longer).
      return jax.lax.scan(body, state, xs)
    # Inside a while loop (even a length-1 or unrolled scan) XLA:CPU compiles the convolutions' weight gradients
    # without their fast kernels and a DCGAN step ran ~25x slower (benchmarks/throughput.py). A Python loop traces
    # the K steps one after another; it costs compile time only.
    metrics = []
    for k in range(num_steps):
      state, m = body(state, row(k))
      metrics.append(m)
    return state, jax.tree.map(lambda *ms: jnp.stack(ms), *metrics)

  P = jax.sharding.PartitionSpec
  batch_spec = P(None, 'data')
  labels_spec = ((P(),) if device_data else (batch_spec,)) if conditional else ()
  in_specs = (P(), P(), *labels_spec, batch_spec) if device_data else (P(), batch_spec, *labels_spec)
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
