"""oneDNN convolutions on the CPU through `jax.ffi` (issue 17), behind `config.cpu_conv`.

* `conv.cc`: the C++ library, three XLA FFI handlers (forward, backward-data, backward-weights; NHWC / HWIO,
  float32), oneDNN primitives cached per shape.
* `build`: compiles it with g++ into `~/.cache/dcgan_jax/ffi/<key>/` on first use, loads and registers it.
* `conv`: `forward`, `backward_data`, `backward_weights` (each a `jax.ffi.ffi_call` whose VJP is the other two) and
  `conv_transpose`.
* `policy`: `configure(mode)`, `using(mode)` and `active()`, the choice between these and XLA's convolutions, with the fallback.

`dcgan_jax.ops.conv` and `dcgan_jax.ops.conv_transpose` call these on the CPU path when `policy.active()`.
"""

from dcgan_jax.ops.onednn.build import library_status
from dcgan_jax.ops.onednn.policy import active
from dcgan_jax.ops.onednn.policy import configure
from dcgan_jax.ops.onednn.policy import self_check
from dcgan_jax.ops.onednn.policy import using

__all__ = ['active', 'configure', 'library_status', 'self_check', 'using']
