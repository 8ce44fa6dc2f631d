"""benchmarks/harness.py: calls made, rounds returned, blocking, compile timing and the table text."""

import jax
import jax.numpy as jnp
import pytest

import conftest  # pylint: disable=unused-import  (puts the repository on sys.path)
from benchmarks import harness


def _counting(fn):
  """`fn` wrapped to count its calls (in `wrapped.calls`)."""

  def wrapped(*args):
    wrapped.calls += 1
    return fn(*args)

  wrapped.calls = 0
  return wrapped


def test_time_calls_makes_warmup_plus_rounds_times_calls_calls():
  fn = _counting(jax.jit(lambda x: x * 2.0))
  timing = harness.time_calls(fn, jnp.ones(3), warmup=2, repeats=4, calls=3)
  assert fn.calls == 2 + 4 * 3
  assert len(timing.rounds) == 4
  assert timing.calls == 3
  assert all(seconds > 0 for seconds in timing.rounds)


def test_timing_median_per_call_and_rates():
  timing = harness.Timing((3.0, 1.0, 2.0), calls=4)
  assert timing.median == 2.0
  assert timing.per_call == 0.5
  assert timing.rates(10) == [40 / 3.0, 40.0, 20.0]


def test_time_alternating_calls_in_turn_and_keeps_order():
  order = []
  fns = {'a': lambda: order.append('a'), 'b': lambda: order.append('b')}
  timings = harness.time_alternating(fns, repeats=2, warmup=1, calls=2)
  assert order == ['a', 'b'] + ['a', 'a', 'b', 'b'] * 2
  assert list(timings) == ['a', 'b']
  assert [len(t.rounds) for t in timings.values()] == [2, 2]


def test_block_waits_for_every_jax_leaf():
  tree = {'x': jnp.arange(3.0), 'y': (jnp.ones(2), 'not an array')}
  assert harness.block(tree) is tree
  seconds, result = harness.time_once(jax.jit(jnp.sum), jnp.arange(4.0))
  assert float(result) == 6.0
  assert seconds > 0


def test_compile_seconds_returns_a_compiled_function_without_running_it():
  fn = _counting(lambda x: x + 1.0)
  seconds, compiled = harness.compile_seconds(jax.jit(fn), jnp.zeros(2))
  assert fn.calls == 1  # The trace; compiled code does not call back into Python.
  assert seconds > 0
  assert compiled(jnp.zeros(2)).tolist() == [1.0, 1.0]
  assert fn.calls == 1


def test_markdown_table_text():
  table = harness.markdown_table(['name', 'ms'], [['a', '1.0'], ['b', 2]], align='lr')
  assert table == '| name | ms |\n| --- | ---: |\n| a | 1.0 |\n| b | 2 |'
  assert harness.markdown_table(['x'], []) == '| x |\n| --- |'
  assert harness.markdown_row(['a', 1.5]) == '| a | 1.5 |'
  with pytest.raises(ValueError):
    harness.markdown_table(['x', 'y'], [['only one']])


def test_header_names_the_command_and_the_machine():
  command, machine_line = harness.header('benchmarks/configs.py', ['--steps', '1'], 'torch 0').split('\n')
  assert command == 'Command: `python benchmarks/configs.py --steps 1`  '
  assert machine_line.startswith('Machine: ')
  assert machine_line.endswith(f'jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s)); '
                               'torch 0  ')


def test_set_fields_sets_dotted_fields_in_place():
  import ml_collections  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({'a': 1, 'model': {'generator': {'width': 2, 'init': 'flax'}}})
  out = harness.set_fields(config, {'a': 3, 'model.generator.init': 'pytorch'})
  assert out is config
  assert config.to_dict() == {'a': 3, 'model': {'generator': {'width': 2, 'init': 'pytorch'}}}
