"""Tests for dcgan_jax.ops.onednn: the oneDNN convolutions behind `config.cpu_conv`.

The library is compiled once (into the per-user cache, reused by later sessions); every case compares oneDNN's
forward and both gradients, through `ops.conv` / `ops.conv_transpose`, with XLA's (`lax`), and checks from the
jaxpr that the FFI targets really ran. The fallback is tested with a PATH that has no g++ and an empty cache.
"""

import logging
import os
import re
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import conftest
from dcgan_jax import backend
from dcgan_jax import config_validation
from dcgan_jax import errors
from dcgan_jax import ops
from dcgan_jax.ops import onednn
from dcgan_jax.ops.onednn import build
from dcgan_jax.ops.onednn import conv as onednn_conv
from dcgan_jax.ops.onednn import policy
from dcgan_jax import parallel

_DN = ('NHWC', 'HWIO', 'NHWC')
_TARGET = re.compile(r'dcgan_onednn_conv_\w+')
_ALL_TARGETS = ['dcgan_onednn_conv_backward_data', 'dcgan_onednn_conv_backward_weights',
                'dcgan_onednn_conv_forward']


@pytest.fixture(autouse=True)
def restore_cpu_conv():
  """`onednn.configure` sets the process-wide mode; each test starts and ends with the default."""
  backend.set_cpu_conv(backend.DEFAULT_CPU_CONV)
  yield
  backend.set_cpu_conv(backend.DEFAULT_CPU_CONV)


@pytest.fixture
def use_onednn(monkeypatch):
  """The CPU path with cpu_conv=onednn (the library built, or the test fails with the reason)."""
  monkeypatch.setenv(backend.ENV_VAR, '1')
  monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, 'onednn')
  status = build.library_status()
  assert status.reason == '' and status.ok


def _inputs(x_shape, k_shape, seed=0):
  kx, kk = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, x_shape, jnp.float32), jax.random.normal(kk, k_shape, jnp.float32)


def _value_and_grads(fn, x, kernel):
  y = fn(x, kernel)
  w = jax.random.normal(jax.random.key(7), y.shape, jnp.float32)
  return y, jax.grad(lambda a, k: jnp.sum(fn(a, k) * w), argnums=(0, 1))(x, kernel)


def _assert_close(actual, expected):
  expected = np.asarray(expected)
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(expected))))


def _targets(fn, *args):
  return sorted(set(_TARGET.findall(str(jax.make_jaxpr(fn)(*args)))))


# The shipped configs' convolutions (batch and channels small): (input spatial, kernel, strides, padding).
_CONV_CASES = [
    pytest.param((14, 14), (5, 5), (2, 2), 'SAME', id='mnist_d_k5s2'),
    pytest.param((32, 32), (4, 4), (2, 2), 'SAME', id='dcgan64_d_k4s2'),
    pytest.param((7, 7), (7, 7), (1, 1), 'VALID', id='mnist_d_final_k7valid'),
    pytest.param((4, 4), (5, 5), (1, 1), 'SAME', id='emnist_k5_larger_than_input'),
    pytest.param((9, 6), (3, 3), (1, 1), 'SAME', id='k3s1_nonsquare'),
    pytest.param((8, 7), (3, 2), (2, 3), ((2, 0), (1, 3)), id='explicit_uneven'),
]


@pytest.mark.parametrize('spatial, kernel_size, strides, padding', _CONV_CASES)
def test_conv_forward_and_both_gradients_equal_xla(use_onednn, spatial, kernel_size, strides, padding):
  x, kernel = _inputs((3, *spatial, 5), (*kernel_size, 5, 6))

  def ours(a, k):
    return ops.conv(a, k, strides, padding)

  def xla(a, k):
    return lax.conv_general_dilated(a, k, strides, padding, dimension_numbers=_DN)

  assert _targets(jax.grad(lambda a, k: jnp.sum(ours(a, k)), argnums=(0, 1)), x, kernel) == _ALL_TARGETS
  y, grads = _value_and_grads(jax.jit(ours), x, kernel)
  want_y, want_grads = _value_and_grads(xla, x, kernel)
  assert y.shape == want_y.shape
  for got, want in zip((y, *grads), (want_y, *want_grads)):
    _assert_close(got, want)


_TRANSPOSE_CASES = [
    pytest.param((7, 7), (5, 5), (2, 2), 'SAME', id='mnist_g_k5s2_7to14'),
    pytest.param((14, 14), (5, 5), (2, 2), 'SAME', id='mnist_g_k5s2_14to28'),
    pytest.param((8, 8), (4, 4), (2, 2), 'SAME', id='dcgan64_g_k4s2'),
    pytest.param((3, 5), (3, 3), (2, 2), 'VALID', id='k3s2valid_nonsquare'),
    pytest.param((3, 4), (3, 3), (2, 2), ((2, 1), (0, 2)), id='explicit'),
]


@pytest.mark.parametrize('spatial, kernel_size, strides, padding', _TRANSPOSE_CASES)
def test_conv_transpose_forward_and_both_gradients_equal_xla(use_onednn, spatial, kernel_size, strides, padding):
  x, kernel = _inputs((2, *spatial, 6), (*kernel_size, 6, 4))

  def ours(a, k):
    return ops.conv_transpose(a, k, strides, padding)

  def xla(a, k):
    return lax.conv_transpose(a, k, strides, padding, dimension_numbers=_DN)

  assert _targets(jax.grad(lambda a, k: jnp.sum(ours(a, k)), argnums=(0, 1)), x, kernel) == _ALL_TARGETS
  y, grads = _value_and_grads(jax.jit(ours), x, kernel)
  want_y, want_grads = _value_and_grads(xla, x, kernel)
  assert y.shape == want_y.shape
  for got, want in zip((y, *grads), (want_y, *want_grads)):
    _assert_close(got, want)


def test_negative_transpose_padding_stays_on_xla(use_onednn):
  x, kernel = _inputs((2, 4, 4, 2), (3, 3, 2, 3))
  padding = ((4, -1), (-1, 3))
  assert _targets(lambda a, k: ops.conv_transpose(a, k, (2, 2), padding), x, kernel) == []
  _assert_close(ops.conv_transpose(x, kernel, (2, 2), padding),
                lax.conv_transpose(x, kernel, (2, 2), padding, dimension_numbers=_DN))


def test_gradient_of_gradient_equals_xla(use_onednn):
  """WGAN-GP differentiates the input gradient again: each pass's VJP is the other two passes."""
  x, kernel = _inputs((2, 9, 9, 3), (5, 5, 3, 4))

  def penalty(conv_fn):
    def inner(a, k):
      return jnp.sum(jnp.tanh(conv_fn(a, k)))
    return lambda a, k: jnp.sum(jax.grad(inner)(a, k) ** 2)

  ours = penalty(lambda a, k: ops.conv(a, k, (2, 2), 'SAME'))
  xla = penalty(lambda a, k: lax.conv_general_dilated(a, k, (2, 2), 'SAME', dimension_numbers=_DN))
  assert _targets(jax.grad(ours, argnums=(0, 1)), x, kernel) == _ALL_TARGETS
  for got, want in zip(jax.jit(jax.grad(ours, argnums=(0, 1)))(x, kernel), jax.grad(xla, argnums=(0, 1))(x, kernel)):
    _assert_close(got, want)


def test_vmap_over_examples_and_kernels_equals_xla(use_onednn):
  xs, kernels = _inputs((3, 2, 6, 6, 2), (3, 3, 3, 2, 4))

  def ours(a, k):
    return jnp.sum(ops.conv(a, k, (2, 2), 'SAME') ** 2)

  def xla(a, k):
    return jnp.sum(lax.conv_general_dilated(a, k, (2, 2), 'SAME', dimension_numbers=_DN) ** 2)

  batched = jax.vmap(jax.value_and_grad(ours, argnums=(0, 1)))
  assert _targets(batched, xs, kernels) == _ALL_TARGETS
  got = jax.jit(batched)(xs, kernels)
  want = jax.vmap(jax.value_and_grad(xla, argnums=(0, 1)))(xs, kernels)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    _assert_close(a, b)


def test_self_check_passes_and_configure_reports_active(use_onednn):
  assert onednn.self_check() == ''
  assert onednn.configure('auto') is True
  assert onednn.library_status().version == '3.2.0'


def test_xla_mode_never_uses_the_library(monkeypatch):
  monkeypatch.setenv(backend.ENV_VAR, '1')
  monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, 'xla')
  x, kernel = _inputs((2, 6, 6, 2), (3, 3, 2, 3))
  assert _targets(jax.grad(lambda a, k: jnp.sum(ops.conv(a, k, (2, 2), 'SAME')), argnums=(0, 1)), x, kernel) == []


def test_cache_directory_is_keyed_by_source_jax_onednn_and_cpu(use_onednn):
  found = build.find_onednn()
  key = build.cache_key(found)
  assert re.fullmatch(r'[0-9a-f]{16}', key)
  assert build.cache_key(found) == key
  assert build.cache_key(('/elsewhere/include', '/elsewhere/lib')) != key
  assert build.library_status().path == os.path.join(build.cache_root(), key, build.LIBRARY_NAME)


@pytest.fixture
def no_compiler(tmp_path, monkeypatch):
  """An empty library cache and a PATH with no g++; the process's build result forgotten before and after."""
  monkeypatch.setenv(build.CACHE_ENV_VAR, str(tmp_path / 'ffi'))
  monkeypatch.setenv('PATH', str(tmp_path / 'empty-bin'))
  monkeypatch.delenv('CXX', raising=False)
  monkeypatch.setenv(backend.ENV_VAR, '1')
  policy.reset()
  yield
  monkeypatch.undo()
  policy.reset()


def test_auto_without_compiler_falls_back_to_xla_with_one_log_line(no_compiler, monkeypatch, caplog):
  monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, 'auto')
  x, kernel = _inputs((2, 6, 6, 2), (3, 3, 2, 3))
  with caplog.at_level(logging.WARNING):
    assert onednn.configure('auto') is False
    y = jax.jit(lambda a, k: ops.conv(a, k, (2, 2), 'SAME'))(x, kernel)
    targets = _targets(lambda a, k: ops.conv_transpose(a, k, (2, 2), 'SAME'), y, kernel.transpose(0, 1, 3, 2))
  assert targets == []
  _assert_close(y, lax.conv_general_dilated(x, kernel, (2, 2), 'SAME', dimension_numbers=_DN))
  lines = [r.getMessage() for r in caplog.records if 'cpu_conv' in r.getMessage()]
  assert lines == ["cpu_conv=auto: using XLA's convolutions: cannot build " + build.SOURCE +
                   ': no C++ compiler (g++) on PATH']


def test_onednn_without_compiler_is_one_clear_error(no_compiler, monkeypatch):
  monkeypatch.delenv(backend.CPU_CONV_ENV_VAR, raising=False)
  with pytest.raises(errors.ConfigError) as info:
    onednn.configure('onednn')
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith('config.cpu_conv=onednn: the oneDNN convolutions cannot be used: cannot build ')
  assert message.endswith('no C++ compiler (g++) on PATH; install them with: pip install onednn-cpu-gomp==2023.2.0 '
                          'onednn-devel-cpu-gomp==2023.2.0 (and g++), or set --config.cpu_conv=auto or xla')
  assert backend.cpu_conv_mode() == 'xla'  # Unchanged.


def test_config_rejects_an_unknown_cpu_conv():
  config = conftest.tiny_config()
  config.cpu_conv = 'mkl'
  with pytest.raises(errors.ConfigError, match=r"config\.cpu_conv='mkl': must be one of auto, xla, onednn$"):
    config_validation.validate(config)
  assert conftest.tiny_config().cpu_conv == 'auto'


@pytest.mark.slow
def test_shard_map_over_two_host_devices_equals_xla():
  """The data-parallel step's form: each device runs the FFI calls on its shard (a child process, 2 devices)."""
  script = textwrap.dedent('''
      import os
      import jax, jax.numpy as jnp, numpy as np
      from jax import lax
      from jax.sharding import Mesh, PartitionSpec as P
      from dcgan_jax import ops
      from dcgan_jax.ops import onednn
      assert onednn.configure('onednn') and jax.device_count() == 2
      mesh = Mesh(np.array(jax.devices()), ('d',))
      kx, kk = jax.random.split(jax.random.key(0))
      x, k = jax.random.normal(kx, (4, 14, 14, 3)), jax.random.normal(kk, (5, 5, 3, 4))
      def grads(conv, check_vma):
        def local(a, w):  # Per device: input gradient of its shard, kernel gradient averaged as the step does.
          g = jax.grad(lambda a, w: jnp.sum(jnp.tanh(conv(a, w))), argnums=(0, 1))(a, w)
          return g[0], g[1] if check_vma else jax.lax.psum(g[1], 'd')
        return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P('d'), P()), out_specs=(P('d'), P()),
                                     check_vma=check_vma))
      def layers(a, w):
        return ops.conv_transpose(ops.conv(a, w, (2, 2), 'SAME'), w.transpose(0, 1, 3, 2), (2, 2), 'SAME')
      for check_vma in (True, False):
        onednn.configure('xla')
        want = grads(layers, check_vma)(x, k)
        onednn.configure('onednn')
        ours = grads(layers, check_vma)
        assert 'dcgan_onednn_conv_backward_weights' in str(jax.make_jaxpr(ours)(x, k))
        for a, b in zip(ours(x, k), want):
          np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
      print('OK')
  ''')
  env = conftest.subprocess_env(num_devices=2)
  env[backend.ENV_VAR] = '1'
  result = subprocess.run([sys.executable, '-c', script], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == 'OK'


@pytest.mark.parametrize('loss', ['non_saturating', 'wgan_gp'])
def test_train_step_with_onednn_equals_xla(use_onednn, monkeypatch, loss):
  """The tiny MNIST DCGAN's whole step (transposed convs, strided convs, BatchNorm; WGAN-GP's gradient of a
  gradient), under jit and vmap over a population of two, with cpu_conv=onednn against xla."""
  import dcgan_jax  # pylint: disable=g-import-not-at-top
  config = conftest.tiny_config()
  config.loss = loss
  if loss == 'wgan_gp':
    config.model.discriminator.batchnorm = False
  states = jax.vmap(lambda key: dcgan_jax.create_train_state(config, key))(jax.random.split(jax.random.key(0), 2))
  images = jax.random.uniform(jax.random.key(1), (config.batch_size, 28, 28, 1), minval=-1, maxval=1)

  def run(mode):
    monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, mode)
    step = jax.vmap(dcgan_jax.train_step, in_axes=(0, None))
    found = _targets(step, states, {'image': images})
    return found, jax.jit(step)(states, {'image': images})

  xla_targets, (xla_state, xla_metrics) = run('xla')
  onednn_targets, (onednn_state, onednn_metrics) = run('onednn')
  assert (xla_targets, onednn_targets) == ([], _ALL_TARGETS)
  for got, want in zip(jax.tree.leaves((onednn_metrics, onednn_state.g_params, onednn_state.d_params)),
                       jax.tree.leaves((xla_metrics, xla_state.g_params, xla_state.d_params))):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-4, atol=2e-5)


def test_the_loops_step_function_is_cached_per_convolution_library(use_onednn, monkeypatch):
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ('data',))
  monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, 'xla')
  xla_step = parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0))
  monkeypatch.setenv(backend.CPU_CONV_ENV_VAR, 'onednn')
  onednn_step = parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0))
  assert onednn_step is not xla_step
  assert onednn_step is parallel.make_parallel_train_step(mesh, True, (-1.0, 1.0))


def test_using_sets_the_mode_for_its_block_only(use_onednn, monkeypatch):
  monkeypatch.delenv(backend.CPU_CONV_ENV_VAR)
  with onednn.using('onednn') as active:
    assert (active, backend.cpu_conv_mode()) == (True, 'onednn')
  assert backend.cpu_conv_mode() == 'xla'
