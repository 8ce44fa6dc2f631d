"""benchmarks/options.py: the variants' configs and the ratio table (the timing itself is the harness's)."""

import pytest

import conftest  # pylint: disable=unused-import  (puts the repository on sys.path)
from benchmarks import options
from dcgan_jax import config_validation


def test_every_variant_is_a_valid_mnist_config_with_its_fields():
  for name, (fields, _) in options.OPTIONS.items():
    config = options.config_for(name, 64)
    config_validation.validate(config)
    assert config.batch_size == 64 and config.model.generator.features == (256, 128)
    for field, value in fields.items():
      *path, name = field.split('.')
      section = config
      for key in path:
        section = section[key]
      assert section[name] == value
  assert options.config_for('all', 128).diffaugment == 'color,translation,cutout'
  assert options.config_for('spectral_norm', 128).model.discriminator.spectral_norm is True
  assert options.config_for('base', 128).model.discriminator.spectral_norm is False


def test_table_gives_medians_and_ratios_to_base():
  table = options.format_table({'base': [2.0, 1.0, 3.0], 'ema': [2.2, 2.4, 2.0]})
  assert '| base | no option | 2000 | 1.00x | 2000, 1000, 3000 |' in table
  assert '| ema | ema_decay=0.999 | 2200 | 1.10x | 2200, 2400, 2000 |' in table


def test_unknown_option_is_refused():
  with pytest.raises(SystemExit):
    options.main(['--options', 'base,flip'])
