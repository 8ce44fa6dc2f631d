"""Checks every config field before any data is read or anything is compiled.

ml_collections already rejects unknown override keys and wrong types on the command line; this adds ranges and
names, and reports every problem at once, one line each, naming the field and what it accepts.
"""

import numbers

import ml_collections

from dcgan_jax import errors
from dcgan_jax import losses
from dcgan_jax import models

SOURCES = ('tfds', 'idx')
NOISES = ('uniform', 'normal')
DTYPES = ('float32', 'bfloat16')
MODELS = ('dcgan', 'mlp')
ACTIVATIONS = ('leaky_relu', 'relu')
OUTPUT_ACTIVATIONS = ('tanh', 'sigmoid')


def _positive_int(config, name, problems, allow_zero=False):
  value = _get(config, name)
  ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and (
      value >= 0 if allow_zero else value > 0)
  if not ok:
    problems.append(f'config.{name}={value!r}: must be an integer {">= 0" if allow_zero else "> 0"}')


def _get(config, dotted):
  for part in dotted.split('.'):
    config = config[part]
  return config


def _choice(config, name, allowed, problems):
  value = _get(config, name)
  if value not in allowed:
    problems.append(f'config.{name}={value!r}: must be one of {", ".join(allowed)}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `errors.ConfigError` listing every invalid field of `config`; returns None when all are valid."""
  problems = []
  for name in ('batch_size', 'steps_per_call', 'latent_dim', 'num_samples', 'log_every_steps', 'checkpoint_every_steps',
               'keep_checkpoints', 'data.image_size', 'data.channels'):
    _positive_int(config, name, problems)
  for name in ('num_epochs', 'sample_every_steps', 'data.max_device_bytes'):
    _positive_int(config, name, problems, allow_zero=True)
  if not isinstance(config.num_train_steps, numbers.Integral) or (
      config.num_epochs <= 0 and config.num_train_steps <= 0):
    problems.append(f'config.num_train_steps={config.num_train_steps!r} with config.num_epochs='
                    f'{config.num_epochs!r}: one of them must be > 0')
  _choice(config, 'noise', NOISES, problems)
  _choice(config, 'dtype', DTYPES, problems)
  _choice(config, 'loss', tuple(sorted(losses.LOSSES)), problems)
  _choice(config, 'data.source', SOURCES, problems)
  _choice(config, 'model.name', MODELS, problems)
  _choice(config, 'model.g_activation', ACTIVATIONS, problems)
  _choice(config, 'model.d_activation', ACTIVATIONS, problems)
  _choice(config, 'model.output_activation', OUTPUT_ACTIVATIONS, problems)
  if config.data.source == 'idx' and not config.data.path:
    problems.append('config.data.path is empty: source=idx needs the directory of IDX files '
                    '(--config.data.path=DIR)')
  if config.data.channels not in (1, 3):
    problems.append(f'config.data.channels={config.data.channels!r}: must be 1 or 3')
  for opt in ('g_optimizer', 'd_optimizer'):
    lr, b1, b2 = (config[opt][k] for k in ('learning_rate', 'b1', 'b2'))
    if not isinstance(lr, numbers.Real) or lr <= 0:
      problems.append(f'config.{opt}.learning_rate={lr!r}: must be a number > 0')
    for k, v in (('b1', b1), ('b2', b2)):
      if not isinstance(v, numbers.Real) or not 0 <= v < 1:
        problems.append(f'config.{opt}.{k}={v!r}: must be in [0, 1)')
  m = config.model
  problems_before_model = len(problems)
  for name in ('g_features', 'd_features'):
    widths = m[name]
    if not widths or not all(isinstance(w, numbers.Integral) and w > 0 for w in widths):
      problems.append(f'config.model.{name}={widths!r}: must be a non-empty list of integers > 0')
  if m.name == 'dcgan':
    for name in ('g_start_size', 'g_kernel_size', 'd_kernel_size'):
      _positive_int(config, f'model.{name}', problems)
    if len(problems) == problems_before_model and models.output_size(config) != config.data.image_size:
      problems.append(
          f'config.data.image_size={config.data.image_size}: the dcgan generator makes '
          f'{models.output_size(config)}x{models.output_size(config)} images (g_start_size={m.g_start_size} '
          f'doubled {len(m.g_features)} times); change model.g_start_size or model.g_features')
  if not isinstance(m.leaky_slope, numbers.Real) or m.leaky_slope < 0:
    problems.append(f'config.model.leaky_slope={m.leaky_slope!r}: must be a number >= 0')
  if problems:
    raise errors.ConfigError('invalid config:\n  ' + '\n  '.join(problems))
