"""benchmarks/configs.py: the per-config throughput table."""

import ml_collections

import conftest  # pylint: disable=unused-import  (puts the repository on sys.path)
from benchmarks import configs as config_benchmark
from dcgan_jax import steps


def test_table_row_states_the_config_and_its_measured_rate(capsys):
  config_benchmark.main(['--configs', 'mnist_fnn', '--steps', '1'])
  out = capsys.readouterr().out
  assert 'Command: `python benchmarks/configs.py --configs mnist_fnn --steps 1`' in out
  row = next(line for line in out.splitlines() if line.startswith('| mnist_fnn |'))
  assert '| mlp / mlp | 28x28x1 | 128 | alternating | 114,064 / 100,609 |' in row
  assert float(row.rstrip(' |').split('|')[-1]) > 0


def test_real_images_per_second_counts_only_d_updates():
  config = ml_collections.ConfigDict({'batch_size': 32})
  images_per_s, steps_text = config_benchmark.describe(
      {'config': config, 'per_kind': {steps.G_ONLY: 0.5, steps.D_ONLY: 0.25}})
  assert images_per_s == '128.0'  # 32 images per D-only step of 0.25 s.
  assert 'G-only 64 img/s' in steps_text
