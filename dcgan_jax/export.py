"""A trained generator as a serialized `jax.export.Exported`: z -> images with the parameters baked in.

    data = export_generator(state, 'generator.jax')         # bytes, also written to the path
    # Elsewhere, with only jax installed:
    exported = jax.export.deserialize(bytearray(open('generator.jax', 'rb').read()))
    images = exported.call(z)                                # z: float32 [N, latent_dim], any N >= 1

The function is lowered for several platforms at once (CPU, CUDA and TPU by default; those this jax cannot lower
for from the current machine are dropped), so one file serves every backend it names (`exported.platforms`).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from dcgan_jax import train

from dcgan_jax import train_state

DEFAULT_PLATFORMS = ('cpu', 'cuda', 'tpu')


def _lower(fn, spec: jax.ShapeDtypeStruct, platforms: Sequence[str]) -> jax.export.Exported:
  try:
    return jax.export.export(fn, platforms=tuple(platforms))(spec)
  except Exception:  # pylint: disable=broad-except  (a platform this jax cannot lower for: try them one by one)
    usable = []
    for platform in platforms:
      try:
        jax.export.export(fn, platforms=(platform,))(spec)
        usable.append(platform)
      except Exception:  # pylint: disable=broad-except
        pass
    if not usable:
      raise
    return jax.export.export(fn, platforms=tuple(usable))(spec)


def export_generator(state: train_state.TrainState, path: Optional[str] = None, *, use_batch_stats: bool = False,
                     platforms: Sequence[str] = DEFAULT_PLATFORMS, generator: str = 'auto') -> bytes:
  """Serializes `z -> generate(state, z, use_batch_stats=..., generator=...)` with the generator's parameters as
  constants.

  Args:
    state: a (single, not stacked) `TrainState`.
    path: where to write the bytes; None writes nothing.
    use_batch_stats: the sampling mode, as in `train.generate`.
    platforms: lowering platforms among 'cpu', 'cuda', 'rocm', 'tpu'; ones that fail to lower here are dropped.
    generator: the weights, as in `train.generate`: 'auto' (the EMA when the state has one), 'ema' or 'raw'.

  Returns:
    The bytes of `jax.export.Exported.serialize()`: a function of `z: float32 [N, latent_dim]` (N symbolic) to
    `float32 [N, H, W, C]`, equal to `train.generate` on the same z (same backend).
  """
  params, batch_stats = jax.device_get((train.generator_params(state, generator), state.g_batch_stats))
  single = state.replace(g_params=params, g_batch_stats=batch_stats, g_ema_params=None)

  def fn(z):
    return train.generate(single, z, use_batch_stats=use_batch_stats, generator='raw')

  (n,) = jax.export.symbolic_shape('n')
  spec = jax.ShapeDtypeStruct((n, state.latent_dim), jnp.float32)
  data = bytes(_lower(jax.jit(fn), spec, platforms).serialize())
  if path is not None:
    with open(path, 'wb') as f:
      f.write(data)
  return data
