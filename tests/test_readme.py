"""The README stays true: every config field is documented, and the test command is the one CI runs."""

import pathlib

from configs import default

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _fields(config, prefix=''):
  for key, value in config.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      yield from _fields(value, name + '.')
    else:
      yield name


def test_every_config_field_is_in_the_readme():
  readme = (ROOT / 'README.md').read_text()
  optimizer_rows = ('g_optimizer.', 'd_optimizer.')
  missing = [f for f in _fields(default.get_config())
             if f'`{f}`' not in readme and not f.startswith(optimizer_rows)]
  assert not missing, f'config fields missing from the README: {missing}'
  for prefix in optimizer_rows:
    assert f'`{prefix}learning_rate`, `.b1`, `.b2`' in readme


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / 'README.md').read_text()
  ci = (ROOT / '.ci' / 'run').read_text()
  command = 'python -m pytest -q tests'
  assert command in readme and command in ci
