"""The README and docs stay true: every config field is documented, the README is short and names only paths in
the repository, and its test command is the one CI runs."""

import importlib
import pathlib
import re
import subprocess

from dcgan_jax import models
from dcgan_jax.configs import default

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _fields(config, prefix=''):
  for key, value in config.items():
    name = f'{prefix}{key}'
    if hasattr(value, 'items'):
      yield from _fields(value, name + '.')
    else:
      yield name


def test_every_config_field_is_in_the_configuration_reference():
  reference = (ROOT / 'docs' / 'configuration.md').read_text()
  optimizer_rows = ('g_optimizer.', 'd_optimizer.')
  shipped = [importlib.import_module(f'dcgan_jax.configs.{p.stem}').get_config()
             for p in sorted((ROOT / 'configs').glob('*.py')) if p.stem != '__init__']
  fields = {f for config in [default.get_config(), *shipped] for f in _fields(config)}
  missing = sorted(f for f in fields if f'| `{f}` |' not in reference and not f.startswith(optimizer_rows))
  assert not missing, f'config fields missing from docs/configuration.md: {missing}'
  for prefix in optimizer_rows:
    assert f'| `{prefix}learning_rate`, `.b1`, `.b2` |' in reference


def test_every_network_field_is_documented_with_its_families():
  """Each module field a config sets has a row `model.<network>.<field>` whose families column names exactly the
  families whose module has it."""
  reference = (ROOT / 'docs' / 'configuration.md').read_text()
  for network, families in models.NETWORKS.items():
    owners = {}
    for family, module in families.items():
      for field in models.config_fields(module):
        owners.setdefault(field, []).append(family)
    for field, expected in owners.items():
      row = re.search(rf'^\| `model\.{network}\.{field}` \| ([^|]*) \|', reference, re.MULTILINE)
      assert row, f'model.{network}.{field} has no row in docs/configuration.md'
      assert row.group(1).strip().split(', ') == expected, (network, field)
    for family in families:
      assert f'| {network} | `{family}` |' in reference


def test_ci_runs_the_readme_test_command():
  readme = (ROOT / 'README.md').read_text()
  ci = (ROOT / '.ci' / 'run').read_text()
  command = 'python -m pytest -q -n 2 tests'
  assert f'\n{command}\n' in readme and f'\n{command}\n' in ci


def test_readme_is_short_and_its_two_commands_come_first():
  readme = (ROOT / 'README.md').read_text()
  assert len(readme.encode()) <= 10_240
  install, train = 'pip install .\n', 'python main.py --config=configs/mnist.py --workdir=/tmp/dcgan_mnist\n'
  assert readme.index(install) < readme.index(train) < readme.index('## Configs')


def test_no_tracked_file_names_a_path_outside_the_repository():
  tracked = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
  outside = '../' + 'shared'  # Spelled in two parts so this file does not name it.
  # `is_file`: dcgan_jax/configs is a tracked link to the configs/ directory (the package's configs).
  offenders = [name for name in tracked if not name.endswith(('.png', '.gif', '.gz')) and (ROOT / name).is_file()
               and outside in (ROOT / name).read_text(errors='replace')]
  assert not offenders, f'files naming {outside}: {offenders}'


def test_docs_link_targets_exist():
  for page in [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]:
    text = page.read_text()
    for target in re.findall(r'\]\(([^)#:]+)\)', text):
      assert (page.parent / target).exists(), f'{page.name} links to missing {target}'
