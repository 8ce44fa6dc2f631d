"""Builds, loads and registers the oneDNN convolution library (`conv.cc`), once per process, falling back cleanly.

`library_status()` compiles `conv.cc` with g++ against oneDNN (headers `oneapi/dnnl/dnnl.hpp` and `libdnnl.so`
under `$DNNL_ROOT`, this Python's prefix, where `pip install onednn-devel-cpu-gomp onednn-cpu-gomp` puts them, or
/usr) and jaxlib's XLA FFI headers into a per-user cache, `~/.cache/dcgan_jax/ffi/<key>/` (`$DCGAN_JAX_FFI_CACHE`
replaces `~/.cache/dcgan_jax/ffi`), where `<key>` hashes the source, the jax version, the oneDNN found and the CPU
model and flags (`cache_key`). A build writes a temporary file and renames it into place, so concurrent first uses
cannot see a half-written library. It then loads the library with ctypes, registers its three handlers with
`jax.ffi.register_ffi_target(..., platform='cpu')` and sets oneDNN's OpenMP team to this machine's cores (the
convolution runs while XLA's threads wait on it, so that does not oversubscribe).

Any failure (no compiler, no oneDNN, a compile or load error) gives a `Status` whose `reason` is one line; the
caller (`dcgan_jax.ops.onednn.conv`) then numerically checks the handlers and decides. Nothing here raises.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading

import jax

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'conv.cc')
LIBRARY_NAME = 'libdcgan_onednn.so'
CACHE_ENV_VAR = 'DCGAN_JAX_FFI_CACHE'
THREADS_ENV_VAR = 'DCGAN_JAX_ONEDNN_THREADS'  # oneDNN's OpenMP threads per convolution; default: the usable cores.
# The FFI target names, and the library symbols that implement them.
TARGETS = {
    'dcgan_onednn_conv_forward': 'DcganOnednnConvForward',
    'dcgan_onednn_conv_backward_data': 'DcganOnednnConvBackwardData',
    'dcgan_onednn_conv_backward_weights': 'DcganOnednnConvBackwardWeights',
}
INSTALL_HINT = 'pip install onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0'


@dataclasses.dataclass(frozen=True)
class Status:
  """Whether the library is built, loaded and registered in this process.

  Attributes:
    ok: the three FFI targets are registered.
    reason: '' when ok, else one line saying why not (and what to install).
    path: the library's file ('' when it was not built).
    version: oneDNN's version as 'major.minor.patch' ('' when not loaded).
  """

  ok: bool
  reason: str = ''
  path: str = ''
  version: str = ''


_LOCK = threading.Lock()
_STATE: dict[str, Status | None] = {'status': None}
_REGISTERED: dict[str, ctypes.CDLL] = {}


def find_onednn() -> tuple[str, str] | None:
  """`(include_dir, lib_dir)` of the first oneDNN install found, or None.

  Looks under `$DNNL_ROOT`, `sys.prefix`, /usr and /usr/local for `include/oneapi/dnnl/dnnl.hpp` next to a
  `libdnnl.so*` in lib/, lib64/ or lib/x86_64-linux-gnu/.
  """
  roots = [os.environ.get('DNNL_ROOT', ''), sys.prefix, '/usr', '/usr/local']
  for root in filter(None, roots):
    include = os.path.join(root, 'include')
    if not os.path.isfile(os.path.join(include, 'oneapi', 'dnnl', 'dnnl.hpp')):
      continue
    for sub in ('lib', 'lib64', os.path.join('lib', 'x86_64-linux-gnu')):
      lib = os.path.join(root, sub)
      if os.path.isdir(lib) and any(name.startswith('libdnnl.so') for name in os.listdir(lib)):
        return include, lib
  return None


def _cpu_description() -> str:
  """The CPU's model name and flags lines of /proc/cpuinfo ('' where there is none)."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
      lines = f.read().splitlines()
  except OSError:
    return ''
  wanted = [line for line in lines if line.startswith(('model name', 'flags'))]
  return '\n'.join(dict.fromkeys(wanted))  # One CPU's lines (all cores repeat them).


def cache_key(onednn: tuple[str, str] | None = None) -> str:
  """The cache directory's name: 16 hex digits of sha256(source, jax version, oneDNN paths, CPU model and flags)."""
  with open(SOURCE, 'rb') as f:
    digest = hashlib.sha256(f.read())
  for part in (jax.__version__, repr(onednn), _cpu_description()):
    digest.update(b'\0' + part.encode())
  return digest.hexdigest()[:16]


def cache_root() -> str:
  """`$DCGAN_JAX_FFI_CACHE`, or `~/.cache/dcgan_jax/ffi`."""
  return os.path.expanduser(os.environ.get(CACHE_ENV_VAR) or os.path.join('~', '.cache', 'dcgan_jax', 'ffi'))


def compile_library(onednn: tuple[str, str]) -> str:
  """Compiles `conv.cc` into the cache (if not there yet) and returns the library's path.

  Raises:
    RuntimeError: one line: no g++ on PATH, or the compiler's first error line.
  """
  directory = os.path.join(cache_root(), cache_key(onednn))
  path = os.path.join(directory, LIBRARY_NAME)
  if os.path.isfile(path):
    return path
  compiler = shutil.which(os.environ.get('CXX', 'g++'))
  if compiler is None:
    raise RuntimeError(f'no C++ compiler ({os.environ.get("CXX", "g++")}) on PATH')
  include, lib = onednn
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix='.build-', suffix='.so', dir=directory)
  os.close(fd)
  command = [compiler, '-O2', '-std=c++17', '-shared', '-fPIC', '-fopenmp', '-w', '-o', tmp, SOURCE,
             f'-I{jax.ffi.include_dir()}', f'-I{include}', f'-L{lib}', f'-Wl,-rpath,{lib}', '-ldnnl']
  try:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
      errors = [line for line in result.stderr.splitlines() if 'error' in line] or result.stderr.splitlines()
      raise RuntimeError(f'g++ failed: {(errors or ["exit status %d" % result.returncode])[0].strip()}')
    os.replace(tmp, path)  # Atomic: a concurrent build of the same key replaces an identical file.
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _register(path: str) -> str:
  """Loads the library, registers its targets (once per process) and sets its thread count; its oneDNN version."""
  library = _REGISTERED.get('library') or ctypes.CDLL(path)
  if 'library' not in _REGISTERED:
    for target, symbol in TARGETS.items():
      jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform='cpu')
    _REGISTERED['library'] = library
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1
  threads = os.environ.get(THREADS_ENV_VAR, '').strip()
  library.dcgan_onednn_set_num_threads(ctypes.c_int(int(threads) if threads.isdigit() and int(threads) > 0
                                                    else cores))
  number = library.dcgan_onednn_version()
  return f'{number // 10000}.{number // 100 % 100}.{number % 100}'


def _build_status() -> Status:
  onednn = find_onednn()
  if onednn is None:
    return Status(False, f'oneDNN not found (no include/oneapi/dnnl/dnnl.hpp + libdnnl.so under $DNNL_ROOT, '
                         f'{sys.prefix}, /usr); install it with: {INSTALL_HINT}')
  try:
    path = compile_library(onednn)
  except (RuntimeError, OSError) as e:
    return Status(False, f'cannot build {SOURCE}: {e}')
  try:
    version = _register(path)
  except (OSError, AttributeError, RuntimeError, ValueError) as e:
    return Status(False, f'cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}')
  return Status(True, '', path, version)


def library_status(refresh: bool = False) -> Status:
  """Builds (or finds in the cache), loads and registers the library on first call; the result is kept.

  Args:
    refresh: try again even if this process already has a result (a library registered before stays
      registered).

  Returns:
    The `Status`.
  """
  with _LOCK:
    if _STATE['status'] is None or refresh:
      _STATE['status'] = _build_status()
    return _STATE['status']


def forget() -> None:
  """Drops this process's result, so the next `library_status()` tries again (tests)."""
  with _LOCK:
    _STATE['status'] = None
