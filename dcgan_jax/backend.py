"""Which hot path runs: the XLA:CPU workarounds, or the standard layers and control flow.

On XLA:CPU some convolution forms and any convolution inside a loop run 10-60x below its other convolutions, so
the library works around them there (measured in benchmarks/): im2col convolutions and custom-VJP transposed
convolutions and max-pooling (`conv_layers`, `layers`), and K fused steps traced one after another in Python
(`parallel.make_parallel_train_step`). None of that was measured on GPU or TPU, so there the standard flax/lax
layers and `lax.scan` run instead. Both paths compute the same values (to float rounding).

The choice is made when a function is traced: `cpu_workarounds()` is True when JAX's default backend is 'cpu'.
Force it with the environment variable `DCGAN_JAX_CPU_WORKAROUNDS=1` (or `0`), or per call where a function takes
a `cpu_workarounds` argument.
"""

import os
from typing import Optional

import jax

ENV_VAR = 'DCGAN_JAX_CPU_WORKAROUNDS'


def cpu_workarounds(force: Optional[bool] = None) -> bool:
  """Whether the XLA:CPU workarounds apply.

  Args:
    force: True or False decides; None reads `DCGAN_JAX_CPU_WORKAROUNDS` ('1'/'true' or '0'/'false'), and without
      it, whether `jax.default_backend()` is 'cpu'.

  Returns:
    True for the CPU path (im2col and custom-VJP layers, Python-unrolled fused steps), False for the standard one.

  Raises:
    ValueError: the environment variable holds something else.
  """
  if force is not None:
    return bool(force)
  value = os.environ.get(ENV_VAR, '').strip().lower()
  if value in ('1', 'true'):
    return True
  if value in ('0', 'false'):
    return False
  if value:
    raise ValueError(f'{ENV_VAR}={value!r}: use 1 or 0 (or unset it to decide by the backend)')
  return jax.default_backend() == 'cpu'
