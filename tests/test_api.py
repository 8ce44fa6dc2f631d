"""The public API of `dcgan_jax` (docs/api.md): own networks, optimizers and losses, sampling gradients,
populations, export, multi-device from user code, the backend switch, and the installed package."""

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import conftest
import dcgan_jax
from dcgan_jax import population as population_lib
from dcgan_jax import steps
from dcgan_jax import train
from dcgan_jax import parallel


class _PlainGenerator(nn.Module):
  """A plain Flax generator: no `bn_axis_name`, no `deterministic`."""

  @nn.compact
  def __call__(self, z, train: bool):
    x = nn.BatchNorm(use_running_average=not train)(nn.relu(nn.Dense(32)(z)))
    return jnp.tanh(nn.Dense(28 * 28)(x)).reshape(-1, 28, 28, 1)


class _PlainDiscriminator(nn.Module):
  """Logits [B, 1]."""

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.Dense(1)(nn.leaky_relu(nn.Dense(32)(x.reshape(x.shape[0], -1)), 0.2))


def _images(seed=1, batch=8):
  return jax.random.uniform(jax.random.key(seed), (batch, 28, 28, 1), minval=-1, maxval=1)


def test_public_names_are_exported():
  assert dcgan_jax.train_step is train.train_step
  assert dcgan_jax.generate is train.generate
  assert set(dcgan_jax.__all__) <= set(dir(dcgan_jax))


def test_plain_flax_networks_train_with_a_relativistic_loss_and_sgd(config):
  rpgan = dcgan_jax.GANLoss(d=lambda r, f: jnp.mean(jax.nn.softplus(f - r)),
                            g=lambda r, f: jnp.mean(jax.nn.softplus(r - f)))
  state = dcgan_jax.create_train_state(config, jax.random.key(0), generator=_PlainGenerator(),
                                       discriminator=_PlainDiscriminator(), g_optimizer=optax.sgd(0.1),
                                       d_optimizer=optax.sgd(0.1), loss=rpgan)
  step = jax.jit(dcgan_jax.train_step)
  new, metrics = step(state, {'image': _images()})
  new, metrics = step(new, {'image': _images(2)})
  assert int(new.step) == 2
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(new.g_params), jax.tree.leaves(state.g_params)))
  assert dcgan_jax.generate(new, jnp.zeros((3, config.latent_dim))).shape == (3, 28, 28, 1)
  assert dcgan_jax.generate(new, jnp.zeros((3, config.latent_dim)), use_batch_stats=True).shape == (3, 28, 28, 1)


def test_the_generator_loss_sees_the_real_logits(config):
  seen = dcgan_jax.GANLoss(d=lambda r, f: jnp.mean(f) - jnp.mean(r), g=lambda r, f: jnp.mean(r))
  state = dcgan_jax.create_train_state(config, jax.random.key(0), loss=seen)
  new, metrics = jax.jit(dcgan_jax.train_step)(state, {'image': _images()})
  # G's loss is D's mean logit on the real batch (after D's update, in training mode): the same D scores it.
  real_logits = steps.with_bn_axis(new.discriminator, None).apply(
      {'params': new.d_params, 'batch_stats': state.d_batch_stats}, _images(), train=True, mutable=['batch_stats'],
      rngs={'dropout': jax.random.key(0)})[0]
  np.testing.assert_allclose(float(metrics['g_loss']), float(jnp.mean(real_logits)), rtol=1e-5, atol=1e-6)


def test_builtin_loss_by_name_and_by_value_give_the_same_step(config):
  by_name = dcgan_jax.create_train_state(config, jax.random.key(0), loss='ragan')
  by_value = dcgan_jax.create_train_state(config, jax.random.key(0), loss=dcgan_jax.losses.get('ragan'))
  a = jax.jit(dcgan_jax.train_step)(by_name, {'image': _images()})
  b = jax.jit(dcgan_jax.train_step)(by_value, {'image': _images()})
  chex.assert_trees_all_equal(a, b)


def test_a_single_z_gets_a_gradient_in_the_default_sampling_mode(config):
  state = dcgan_jax.create_train_state(config, jax.random.key(0))
  state, _ = jax.jit(dcgan_jax.train_step)(state, {'image': _images()})
  z = jnp.full((1, config.latent_dim), 0.3)
  loss = lambda z, **kw: jnp.sum(dcgan_jax.generate(state, z, **kw))
  assert float(jnp.abs(jax.grad(loss)(z)).max()) > 1e-4


def test_batch_statistics_normalize_a_single_z_of_a_dense_generator_away():
  """Why running averages are the default: with batch statistics a dense generator's output ignores a lone z."""
  from dcgan_jax.configs import mnist_mlp  # pylint: disable=g-import-not-at-top
  config = mnist_mlp.get_config()
  config.model.generator.features = (16,)
  config.model.discriminator.features = (16,)
  state = dcgan_jax.create_train_state(config, jax.random.key(0))
  z = jnp.full((1, config.latent_dim), 0.3)
  loss = lambda z, **kw: jnp.sum(dcgan_jax.generate(state, z, **kw))
  assert float(jnp.abs(jax.grad(lambda z: loss(z, use_batch_stats=True))(z)).max()) == 0.0
  assert float(jnp.abs(jax.grad(loss)(z)).max()) > 1e-4


def _member_config(lr, smoothing):
  config = conftest.tiny_config()
  config.g_optimizer.learning_rate = lr
  config.label_smoothing = smoothing
  return config


def test_population_members_equal_the_single_runs():
  config = conftest.tiny_config()
  seeds, lrs, smoothing = [0, 5, 7], [1e-4, 2e-3, 5e-3], [0.0, 0.1, 0.3]
  population = dcgan_jax.create_population(
      config, seeds, **{'g_optimizer.learning_rate': lrs, 'label_smoothing': smoothing})
  pop_step = jax.jit(jax.vmap(dcgan_jax.train_step, in_axes=(0, None)))
  step = jax.jit(dcgan_jax.train_step)
  batches = [{'image': _images(s)} for s in (1, 2, 3)]
  for batch in batches:
    population, pop_metrics = pop_step(population, batch)
  for i, seed in enumerate(seeds):
    single = dcgan_jax.create_train_state(_member_config(lrs[i], smoothing[i]), jax.random.key(seed))
    for batch in batches:
      single, metrics = step(single, batch)
    # vmap batches the matmuls differently: rounding, which Adam's normalization can lift to ~1e-5 in a weight.
    chex.assert_trees_all_close(dcgan_jax.member(population, i), single, rtol=1e-3, atol=5e-5)
    for k, v in metrics.items():
      np.testing.assert_allclose(float(pop_metrics[k][i]), float(v), rtol=1e-3, atol=1e-5)
  assert float(population.label_smoothing[2]) == pytest.approx(0.3)


def test_population_refuses_a_field_that_changes_the_program():
  with pytest.raises(ValueError, match=r'model.generator.features is not data'):
    dcgan_jax.create_population(conftest.tiny_config(), [0, 1], **{'model.generator.features': [(8, 4), (4, 4)]})
  with pytest.raises(ValueError, match=r'label_smoothing has 1 values for 2 seeds'):
    dcgan_jax.create_population(conftest.tiny_config(), [0, 1], label_smoothing=[0.1])
  assert population_lib.SWEEPABLE == ('g_optimizer.learning_rate', 'd_optimizer.learning_rate', 'label_smoothing',
                                      'gp_weight', 'ema_decay', 'r1_weight', 'r2_weight', 'class_loss_weight')
  with pytest.raises(ValueError, match=r'ema_decay=\[0.0, 0.9\] switches its option off'):
    dcgan_jax.create_population(conftest.tiny_config(), [0, 1], ema_decay=[0.0, 0.9])


_ONLY_JAX = """
import sys, jax, numpy as np
exported = jax.export.deserialize(bytearray(open(sys.argv[1], 'rb').read()))
z = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(exported.call(z)))
assert not any(name.startswith('dcgan_jax') for name in sys.modules), 'dcgan_jax was imported'
print(sorted(exported.platforms))
"""


@pytest.mark.slow
def test_exported_generator_runs_in_a_process_that_imports_only_jax(config, tmp_path):
  state = dcgan_jax.create_train_state(config, jax.random.key(0))
  state, _ = jax.jit(dcgan_jax.train_step)(state, {'image': _images()})
  data = dcgan_jax.export_generator(state, str(tmp_path / 'g.jax'))
  assert (tmp_path / 'g.jax').read_bytes() == data
  z = np.asarray(jax.random.normal(jax.random.key(4), (5, config.latent_dim)), np.float32)
  np.save(tmp_path / 'z.npy', z)
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH='')
  proc = subprocess.run([sys.executable, '-c', _ONLY_JAX, str(tmp_path / 'g.jax'), str(tmp_path / 'z.npy'),
                         str(tmp_path / 'out.npy')], capture_output=True, text=True, env=env, cwd='/',
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "'cpu'" in proc.stdout
  np.testing.assert_allclose(np.load(tmp_path / 'out.npy'), dcgan_jax.generate(state, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('force', ['1', '0'])
def test_backend_paths_give_the_same_step_on_cpu(force, monkeypatch):
  config = conftest.tiny_config()
  config.model.discriminator.pool = 'max'
  config.model.discriminator.strides = (1, 1)
  state = dcgan_jax.create_train_state(config, jax.random.key(0))
  batch = {'image': _images()}
  monkeypatch.setenv('DCGAN_JAX_CPU_WORKAROUNDS', force)
  assert dcgan_jax.cpu_workarounds() == (force == '1')
  forced = jax.jit(lambda s, b: train.train_step(s, b))(state, batch)  # A fresh function: traced now.
  jaxpr = str(jax.make_jaxpr(lambda s, b: train.train_step(s, b))(state, batch))
  assert ('custom_vjp_call' in jaxpr) == (force == '1')
  monkeypatch.setenv('DCGAN_JAX_CPU_WORKAROUNDS', '1' if force == '0' else '0')
  other = jax.jit(lambda s, b: train.train_step(s, b))(state, batch)
  chex.assert_trees_all_close(forced, other, rtol=2e-4, atol=2e-6)


def test_fused_steps_scan_or_unroll_alike():
  config = conftest.tiny_config()
  state = dcgan_jax.create_train_state(config, jax.random.key(0))
  mesh = jax.make_mesh((1,), ('data',))
  P = jax.sharding.PartitionSpec
  rows = jax.random.randint(jax.random.key(3), (3, 8, 28, 28, 1), 0, 256).astype(jnp.uint8)
  rows = jax.device_put(rows, jax.sharding.NamedSharding(mesh, P(None, 'data')))
  results = []
  for cpu in (True, False):
    fn = parallel.make_parallel_train_step(mesh, False, (-1.0, 1.0), cpu_workarounds=cpu)
    # The step donates its state: each call gets its own copy, replicated over the mesh.
    copy = jax.device_put(jax.tree.map(jnp.copy, state), jax.sharding.NamedSharding(mesh, P()))
    jaxpr = str(jax.make_jaxpr(fn)(copy, rows))
    assert ('scan' in jaxpr) == (not cpu)
    results.append(fn(copy, rows))
  chex.assert_trees_all_close(results[0], results[1], rtol=2e-4, atol=2e-6)


_SHARDED = """
import json, jax, numpy as np
import conftest, dcgan_jax
state, images = conftest.sgd_state_and_images()
batch = {'image': jax.numpy.asarray(images, 'float32') / 127.5 - 1}
mesh = jax.make_mesh((4,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
sharded = jax.device_put(batch['image'], jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data')))
assert len(sharded.sharding.device_set) == 4
step = jax.jit(dcgan_jax.train_step)
one, m1 = step(state, batch)
many, m4 = step(state, {'image': sharded})
print(json.dumps({'p': [float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many))],
                  'm': {k: [float(m1[k]), float(m4[k])] for k in m1}}))
"""


@pytest.mark.slow
def test_jit_train_step_on_a_batch_sharded_over_four_devices_equals_one_device():
  env = conftest.subprocess_env(num_devices=4)
  env['PYTHONPATH'] = str(conftest.ROOT / 'tests') + os.pathsep + env['PYTHONPATH']
  proc = subprocess.run([sys.executable, '-c', _SHARDED], capture_output=True, text=True, env=env,
                        cwd=conftest.ROOT, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  import json  # pylint: disable=g-import-not-at-top
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert max(result['p']) < 1e-5
  for k, (one, many) in result['m'].items():
    assert one == pytest.approx(many, rel=1e-5, abs=1e-6), k


def _doc_blocks(path: pathlib.Path) -> str:
  blocks = re.findall(r'```python\n(.*?)```', path.read_text(), flags=re.S)
  return '\n'.join(textwrap.dedent(b) for b in blocks)


def test_docs_api_examples_run():
  code = _doc_blocks(conftest.ROOT / 'docs' / 'api.md')
  assert 'create_population' in code and 'export_generator' in code
  exec(compile(code, 'docs/api.md', 'exec'), {})  # pylint: disable=exec-used


_INSTALLED = """
import dcgan_jax
assert dcgan_jax.__file__.startswith(TARGET), dcgan_jax.__file__
from dcgan_jax.configs import mnist
import importlib
for name in NAMES:
  importlib.import_module('dcgan_jax.configs.' + name).get_config()
print(mnist.get_config().batch_size)
"""


@pytest.mark.slow
def test_configs_ship_with_a_non_editable_install(tmp_path):
  target = tmp_path / 'site'
  pip = subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps', '--target', str(target),
                        str(conftest.ROOT)], capture_output=True, text=True, timeout=300)
  assert pip.returncode == 0, pip.stderr[-3000:]
  names = sorted(p.stem for p in (conftest.ROOT / 'configs').glob('*.py') if p.stem != '__init__')
  script = f'TARGET = {str(target)!r}\nNAMES = {names!r}\n' + _INSTALLED
  env = dict(os.environ, PYTHONPATH=str(target), JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env, cwd='/tmp',
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split()[-1] == '128'


def test_readme_snippet_runs():
  readme = (conftest.ROOT / 'README.md').read_text()
  section = readme[readme.index('## Using it from your code'):]
  code = re.search(r'```python\n(.*?)```', section, flags=re.S).group(1)
  assert 'create_population' in code
  exec(compile(code, 'README.md', 'exec'), {})  # pylint: disable=exec-used
