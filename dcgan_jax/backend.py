"""Which hot path runs: the XLA:CPU workarounds, or the standard layers and control flow.

On XLA:CPU some convolution forms and any convolution inside a loop run 10-60x below its other convolutions, so
the library works around them there (measured in benchmarks/): im2col convolutions and custom-VJP transposed
convolutions and max-pooling (`conv_layers`, `layers`), and K fused steps traced one after another in Python
(`parallel.make_parallel_train_step`). None of that was measured on GPU or TPU, so there the standard flax/lax
layers and `lax.scan` run instead. Both paths compute the same values (to float rounding).

The choice is made when a function is traced: `cpu_workarounds()` is True when JAX's default backend is 'cpu'.
Force it with the environment variable `DCGAN_JAX_CPU_WORKAROUNDS=1` (or `0`), or per call where a function takes
a `cpu_workarounds` argument.

On the CPU path, which library computes the ordinary convolutions is `cpu_conv_mode()`: 'xla' (XLA's own), 'onednn'
(oneDNN's, through the FFI handlers of `dcgan_jax.ops.onednn`; an error if they cannot be built) or 'auto' (oneDNN's
when they build and pass their numeric self-check, else XLA's). `set_cpu_conv` sets it (the trainer sets
`config.cpu_conv`); the environment variable `DCGAN_JAX_CPU_CONV` overrides both.
"""

import os
from typing import Optional

import jax

ENV_VAR = 'DCGAN_JAX_CPU_WORKAROUNDS'
CPU_CONV_ENV_VAR = 'DCGAN_JAX_CPU_CONV'
CPU_CONV_MODES = ('auto', 'xla', 'onednn')
DEFAULT_CPU_CONV = 'xla'
_CPU_CONV = {'mode': DEFAULT_CPU_CONV}


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


def set_cpu_conv(mode: str) -> None:
  """Sets which library computes the CPU path's convolutions from now on (functions traced later): one of
  `CPU_CONV_MODES` ('auto', 'xla', 'onednn'); see the module docstring.

  Raises:
    ValueError: another value.
  """
  if mode not in CPU_CONV_MODES:
    raise ValueError(f'cpu_conv={mode!r}: use one of {", ".join(CPU_CONV_MODES)}')
  _CPU_CONV['mode'] = mode


def cpu_conv_mode() -> str:
  """The convolution library setting in force: `DCGAN_JAX_CPU_CONV` if set, else the last `set_cpu_conv` (default
  `DEFAULT_CPU_CONV`). One of 'auto', 'xla', 'onednn'.

  Raises:
    ValueError: the environment variable holds something else.
  """
  value = os.environ.get(CPU_CONV_ENV_VAR, '').strip().lower()
  if value and value not in CPU_CONV_MODES:
    raise ValueError(f'{CPU_CONV_ENV_VAR}={value!r}: use one of {", ".join(CPU_CONV_MODES)} (or unset it)')
  return value or _CPU_CONV['mode']
