"""Tests for dcgan_jax.ops: the custom-VJP transposed convolution and the im2col convolution.

The references are `lax.conv_transpose` / `flax.linen.ConvTranspose` and `lax.conv_general_dilated` /
`flax.linen.Conv` with the same kernel; shapes are tiny because every case is an XLA compile.
"""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dcgan_jax import ops
from dcgan_jax.ops import transposed as ops_transposed

_DN = ('NHWC', 'HWIO', 'NHWC')

# (input spatial shape, kernel size, strides, padding)
_CASES = [
    pytest.param((7, 7), (5, 5), (2, 2), 'SAME', id='k5s2same_7to14'),
    pytest.param((14, 14), (5, 5), (2, 2), 'SAME', id='k5s2same_14to28'),
    pytest.param((1, 1), (7, 7), (1, 1), 'VALID', id='k7s1valid_1to7'),
    pytest.param((4, 4), (4, 4), (2, 2), 'SAME', id='k4s2same_4to8'),
    pytest.param((1, 1), (4, 4), (1, 1), 'VALID', id='k4s1valid_1to4'),
    pytest.param((3, 3), (4, 4), (2, 2), 'VALID', id='k4s2valid'),
    pytest.param((3, 5), (3, 3), (2, 2), 'SAME', id='k3s2same_nonsquare'),
    pytest.param((3, 5), (3, 3), (2, 2), 'VALID', id='k3s2valid_nonsquare'),
    pytest.param((4, 3), (3, 3), (1, 1), 'SAME', id='k3s1same'),
    pytest.param((3, 4), (2, 2), (3, 3), 'SAME', id='k2s3same_stride_gt_kernel'),
    pytest.param((4, 3), (3, 5), (2, 1), 'SAME', id='k3x5s2x1same'),
    pytest.param((3, 4), (3, 3), (2, 2), ((2, 1), (0, 3)), id='explicit'),
    # Low pad beyond k - 1 and a negative (cropping) pad: the strided-conv
    # padding in the backward pass goes negative on both sides.
    pytest.param((4, 4), (3, 3), (2, 2), ((4, -1), (-1, 3)), id='explicit_neg'),
]


def _random_inputs(spatial, kernel_size, cin=2, cout=3, batch=2, seed=0):
  kx, kk = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (batch, *spatial, cin), jnp.float32)
  kernel = jax.random.normal(kk, (*kernel_size, cin, cout), jnp.float32)
  return x, kernel


def _value_and_grads(fn, x, kernel, seed=1):
  """Output and (d/dx, d/dkernel) of a random linear functional of it."""
  y = fn(x, kernel)
  w = jax.random.normal(jax.random.key(seed), y.shape, jnp.float32)

  def loss(x, kernel):
    return jnp.sum(fn(x, kernel).astype(jnp.float32) * w)

  return y, jax.grad(loss, argnums=(0, 1))(x, kernel)


def _assert_close(actual, expected, rtol=1e-5):
  expected = np.asarray(expected, np.float32)
  # Sums of O(1) random terms: scale atol by the result's magnitude so that
  # near-cancelled entries do not fail a pure relative test.
  atol = rtol * max(1.0, float(np.abs(expected).max()))
  np.testing.assert_allclose(np.asarray(actual, np.float32), expected,
                             rtol=rtol, atol=atol)


def _conv_eqns(jaxpr):
  """All conv_general_dilated equations, including inside nested jaxprs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'conv_general_dilated':
      found.append(eqn)
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found.extend(_conv_eqns(sub))
  return found


@pytest.mark.parametrize('spatial,kernel_size,strides,padding', _CASES)
def test_matches_lax_values_and_gradients(spatial, kernel_size, strides,
                                          padding):
  x, kernel = _random_inputs(spatial, kernel_size)

  def ours(x, k):
    return ops.conv_transpose(x, k, strides, padding)

  def reference(x, k):
    return lax.conv_transpose(x, k, strides, padding, dimension_numbers=_DN)

  y, (dx, dk) = jax.jit(lambda x, k: _value_and_grads(ours, x, k))(x, kernel)
  y_ref, (dx_ref, dk_ref) = jax.jit(
      lambda x, k: _value_and_grads(reference, x, k))(x, kernel)
  assert y.shape == y_ref.shape
  assert dx.shape == x.shape and dk.shape == kernel.shape
  _assert_close(y, y_ref)
  _assert_close(dx, dx_ref)
  _assert_close(dk, dk_ref)


@pytest.mark.parametrize('spatial,kernel_size,strides,padding,expected', [
    ((7, 7), (5, 5), (2, 2), 'SAME', (14, 14)),
    ((14, 14), (5, 5), (2, 2), 'SAME', (28, 28)),
    ((1, 1), (7, 7), (1, 1), 'VALID', (7, 7)),
    ((4, 4), (4, 4), (2, 2), 'SAME', (8, 8)),
    ((1, 1), (4, 4), (1, 1), 'VALID', (4, 4)),
])
def test_output_shapes_of_dcgan_layers(spatial, kernel_size, strides, padding,
                                       expected):
  x, kernel = _random_inputs(spatial, kernel_size)
  out = jax.eval_shape(
      lambda x, k: ops.conv_transpose(x, k, strides, padding), x, kernel)
  assert out.shape == (2, *expected, 3)


def test_backward_has_no_lhs_dilation_but_flax_does():
  x, kernel = _random_inputs((3, 3), (5, 5))
  g = jnp.ones((2, 6, 6, 3), jnp.float32)

  def backward_dilations(fn):
    _, vjp = jax.vjp(fn, x, kernel)
    eqns = _conv_eqns(jax.make_jaxpr(vjp)(g).jaxpr)
    assert eqns, 'expected convolutions in the backward pass'
    return [tuple(e.params['lhs_dilation']) for e in eqns]

  ours = backward_dilations(
      lambda x, k: ops.conv_transpose(x, k, (2, 2), 'SAME'))
  flax_layer = nn.ConvTranspose(3, (5, 5), strides=(2, 2), use_bias=False)
  theirs = backward_dilations(
      lambda x, k: flax_layer.apply({'params': {'kernel': k}}, x))
  assert all(d == (1, 1) for d in ours), ours
  # Guards the check itself: the stock layer must show the slow form.
  assert any(d != (1, 1) for d in theirs), theirs


@pytest.mark.parametrize('x_dtype,k_dtype', [
    (jnp.bfloat16, jnp.bfloat16),
    (jnp.bfloat16, jnp.float32),
    (jnp.float32, jnp.bfloat16),
])
def test_gradient_dtypes_follow_inputs(x_dtype, k_dtype):
  x, kernel = _random_inputs((3, 3), (4, 4))
  x, kernel = x.astype(x_dtype), kernel.astype(k_dtype)

  def ours(x, k):
    return ops.conv_transpose(x, k, (2, 2), 'SAME')

  y, (dx, dk) = jax.jit(lambda x, k: _value_and_grads(ours, x, k))(x, kernel)
  assert y.dtype == jnp.result_type(x_dtype, k_dtype)
  assert dx.dtype == x_dtype and dk.dtype == k_dtype
  # Same numbers as float32 on the bf16-rounded inputs, to bf16 accuracy.
  x32, k32 = x.astype(jnp.float32), kernel.astype(jnp.float32)
  _, (dx_ref, dk_ref) = jax.jit(
      lambda x, k: _value_and_grads(ours, x, k))(x32, k32)
  _assert_close(dx, dx_ref, rtol=3e-2)
  _assert_close(dk, dk_ref, rtol=3e-2)


@pytest.mark.parametrize('in_shape,kernel_size,strides,padding', [
    ((2, 4, 4, 2), (4, 4), (2, 2), 'SAME'),
    ((2, 1, 1, 2), (7, 7), (1, 1), 'VALID'),
    ((3, 5, 2), (3, 3), (2, 2), 'SAME'),  # unbatched, as flax allows
])
def test_module_params_and_outputs_match_flax(in_shape, kernel_size, strides,
                                              padding):
  x = jax.random.normal(jax.random.key(0), in_shape)
  ours = ops.ConvTranspose(3, kernel_size, strides=strides, padding=padding)
  theirs = nn.ConvTranspose(3, kernel_size, strides=strides, padding=padding)
  params = ours.init(jax.random.key(1), x)['params']
  flax_params = theirs.init(jax.random.key(1), x)['params']
  assert (jax.tree.map(lambda a: (a.shape, a.dtype), params) ==
          jax.tree.map(lambda a: (a.shape, a.dtype), flax_params))
  # Same names and initialisers, so the same key gives the same values.
  jax.tree.map(np.testing.assert_array_equal, params, flax_params)
  params = jax.tree.map(lambda a: a + 0.1, params)  # a nonzero bias

  def loss(module, p, x):
    y = module.apply({'params': p}, x)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), y

  (_, y), grads = jax.jit(jax.value_and_grad(
      lambda p, x: loss(ours, p, x), argnums=(0, 1), has_aux=True))(params, x)
  (_, y_ref), grads_ref = jax.jit(jax.value_and_grad(
      lambda p, x: loss(theirs, p, x), argnums=(0, 1), has_aux=True))(
          params, x)
  assert y.shape == y_ref.shape
  _assert_close(y, y_ref)
  jax.tree.map(_assert_close, grads, grads_ref)


def test_module_bfloat16_computation_dtype():
  x = jnp.ones((2, 3, 3, 2), jnp.float32)
  module = ops.ConvTranspose(4, (4, 4), strides=(2, 2),
                                dtype=jnp.bfloat16)
  params = module.init(jax.random.key(0), x)['params']
  assert params['kernel'].dtype == jnp.float32
  y, grads = jax.value_and_grad(
      lambda p: jnp.sum(module.apply({'params': p}, x).astype(jnp.float32)))(
          params)
  assert module.apply({'params': params}, x).dtype == jnp.bfloat16
  assert jnp.isfinite(y)
  assert grads['kernel'].dtype == jnp.float32
  assert grads['bias'].dtype == jnp.float32


def test_rejects_bad_padding():
  x, kernel = _random_inputs((3, 3), (3, 3))
  with pytest.raises(ValueError, match='padding'):
    ops.conv_transpose(x, kernel, (2, 2), 'CIRCULAR')


# Conv / conv: the im2col convolution and the rule that picks it.

# (input spatial shape, kernel size, strides, padding, im2col by the rule)
_CONV_CASES = [
    pytest.param((4, 4), (5, 5), (1, 1), 'SAME', True, id='k5s1same_kernel_gt_input'),
    pytest.param((7, 7), (5, 5), (2, 2), 'SAME', True, id='k5s2same_kernel_gt_output'),
    pytest.param((14, 14), (5, 5), (2, 2), 'SAME', False, id='k5s2same_14to7'),
    pytest.param((5, 5), (5, 5), (1, 1), 'SAME', False, id='k5s1same_kernel_eq_input'),
    pytest.param((7, 6), (7, 6), (1, 1), 'VALID', True, id='valid_whole_input'),
    pytest.param((2, 3), (3, 3), (1, 1), 'SAME', True, id='k3s1same_2x3'),
    pytest.param((5, 4), (3, 5), (2, 1), 'SAME', True, id='k3x5s2x1same'),
    pytest.param((9, 7), (3, 3), (3, 2), 'VALID', False, id='k3s3x2valid'),
    pytest.param((5, 5), (3, 3), (2, 2), ((2, -1), (0, 3)), True, id='explicit_neg'),
]


def _lax_conv(x, kernel, strides, padding):
  return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DN)


@pytest.mark.parametrize('spatial,kernel_size,strides,padding,by_rule', _CONV_CASES)
def test_conv_matches_lax_values_and_gradients(spatial, kernel_size, strides, padding, by_rule):
  assert ops.uses_im2col(spatial, kernel_size, strides, padding) == by_rule
  x, kernel = _random_inputs(spatial, kernel_size)
  reference = jax.jit(lambda x, k: _value_and_grads(lambda x, k: _lax_conv(x, k, strides, padding), x, k))
  y_ref, (dx_ref, dk_ref) = reference(x, kernel)
  for im2col in (None, True, False):
    ours = jax.jit(lambda x, k, im2col=im2col: _value_and_grads(
        lambda x, k: ops.conv(x, k, strides, padding, im2col=im2col), x, k))
    y, (dx, dk) = ours(x, kernel)
    assert y.shape == y_ref.shape and dx.shape == x.shape and dk.shape == kernel.shape
    _assert_close(y, y_ref)
    _assert_close(dx, dx_ref)
    _assert_close(dk, dk_ref)


def test_conv_im2col_has_no_convolution():
  x, kernel = _random_inputs((4, 4), (5, 5))
  _, vjp = jax.vjp(lambda x, k: ops.conv(x, k, (1, 1), 'SAME'), x, kernel)
  assert not _conv_eqns(jax.make_jaxpr(vjp)(jnp.ones((2, 4, 4, 3))).jaxpr)
  assert _conv_eqns(jax.make_jaxpr(lambda x, k: ops.conv(x, k, (1, 1), 'SAME', im2col=False))(x, kernel).jaxpr)


def test_conv_dtypes_follow_inputs():
  x, kernel = _random_inputs((4, 4), (5, 5))
  x = x.astype(jnp.bfloat16)
  y, (dx, dk) = jax.jit(lambda x, k: _value_and_grads(lambda x, k: ops.conv(x, k), x, k))(x, kernel)
  assert y.dtype == jnp.float32  # Promoted, as lax.
  assert dx.dtype == jnp.bfloat16 and dk.dtype == jnp.float32


@pytest.mark.parametrize('in_shape,kernel_size,strides,padding,use_bias', [
    ((2, 4, 4, 2), (5, 5), (1, 1), 'SAME', True),  # im2col
    ((2, 6, 5, 2), (3, 3), (2, 2), 'SAME', False),  # XLA
    ((2, 3, 3, 2), (3, 3), (1, 1), 'VALID', True),  # im2col: one window
    ((4, 5, 2), (3, 3), (2, 2), 'SAME', True),  # unbatched, as flax allows
])
def test_conv_module_params_and_outputs_match_flax(in_shape, kernel_size, strides, padding, use_bias):
  x = jax.random.normal(jax.random.key(0), in_shape)
  ours = ops.Conv(3, kernel_size, strides=strides, padding=padding, use_bias=use_bias)
  theirs = nn.Conv(3, kernel_size, strides=strides, padding=padding, use_bias=use_bias)
  params = ours.init(jax.random.key(1), x)['params']
  flax_params = theirs.init(jax.random.key(1), x)['params']
  # Same names, shapes, dtypes and initialisers: the same key gives the same values.
  assert jax.tree.structure(params) == jax.tree.structure(flax_params)
  jax.tree.map(np.testing.assert_array_equal, params, flax_params)
  params = jax.tree.map(lambda a: a + 0.1, params)  # a nonzero bias

  def loss(module, p, x):
    y = module.apply({'params': p}, x)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), y

  grad = lambda module: jax.jit(jax.value_and_grad(lambda p, x: loss(module, p, x), argnums=(0, 1), has_aux=True))
  (_, y), grads = grad(ours)(params, x)
  (_, y_ref), grads_ref = grad(theirs)(params, x)
  assert y.shape == y_ref.shape
  _assert_close(y, y_ref)
  jax.tree.map(_assert_close, grads, grads_ref)


def test_conv_module_bfloat16_computation_dtype():
  x = jnp.ones((2, 3, 3, 2), jnp.float32)
  module = ops.Conv(4, (4, 4), dtype=jnp.bfloat16)
  params = module.init(jax.random.key(0), x)['params']
  assert params['kernel'].dtype == jnp.float32
  assert module.apply({'params': params}, x).dtype == jnp.bfloat16
  grads = jax.grad(lambda p: jnp.sum(module.apply({'params': p}, x).astype(jnp.float32)))(params)
  assert grads['kernel'].dtype == jnp.float32 and grads['bias'].dtype == jnp.float32


def test_conv_rejects_bad_arguments():
  x, kernel = _random_inputs((3, 3), (3, 3))
  with pytest.raises(ValueError, match='padding'):
    ops.conv(x, kernel, (1, 1), 'CIRCULAR')
  with pytest.raises(ValueError, match='channels'):
    ops.conv(x[..., :1], kernel)


def test_dense_transpose_rule():
  assert ops.is_dense_transpose((1, 1), (7, 7), ops_transposed._resolve_pads((7, 7), (1, 1), 'VALID'))
  assert not ops.is_dense_transpose((1, 1), (7, 7), ops_transposed._resolve_pads((7, 7), (1, 1), 'SAME'))
  assert not ops.is_dense_transpose((2, 2), (4, 4), ops_transposed._resolve_pads((4, 4), (1, 1), 'VALID'))


# max_pool: flax.linen.max_pool's values and gradient, including which pixel of a tie gets it.


@pytest.mark.parametrize('shape,window', [
    ((2, 6, 6, 3), (2, 2)),
    ((2, 5, 7, 2), (2, 2)),  # odd sizes: 'SAME' pads with -inf
    ((1, 7, 5, 2), (3, 2)),
])
def test_max_pool_matches_flax_with_ties(shape, window):
  # Values on a coarse grid, so that many windows hold several equal maxima.
  x = jnp.round(2 * jax.random.normal(jax.random.key(0), shape)) / 2
  reference = lambda x: nn.max_pool(x, window, strides=window, padding='SAME')
  w = jax.random.normal(jax.random.key(1), reference(x).shape)
  value_and_grad = lambda pool: jax.jit(lambda x: (pool(x), jax.grad(lambda x: jnp.sum(pool(x) * w))(x)))
  y, dx = value_and_grad(lambda x: ops.max_pool(x, window))(x)
  y_ref, dx_ref = value_and_grad(reference)(x)
  np.testing.assert_array_equal(y, y_ref)
  np.testing.assert_array_equal(dx, dx_ref)
