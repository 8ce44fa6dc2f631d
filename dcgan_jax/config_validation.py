"""Checks every config field before any data is read or anything is compiled.

ml_collections already rejects unknown override keys and wrong types on the command line; this adds ranges and
names, and reports every problem at once, one line each, naming the field and what it accepts.
"""

import math
import numbers

import ml_collections

from dcgan_jax import augment
from dcgan_jax import bundled
from dcgan_jax import errors
from dcgan_jax import input_pipeline
from dcgan_jax import losses
from dcgan_jax import models
from dcgan_jax import schedules

SOURCES = input_pipeline.SOURCES
NOISES = ('uniform', 'normal')
# Built-in losses whose G loss reads D's logits of the real batch.
RELATIVISTIC_LOSSES = ('rpgan', 'ragan')
DTYPES = ('float32', 'bfloat16')
MODELS = models.FAMILIES
ACTIVATIONS = models.common.ACTIVATIONS
OUTPUT_ACTIVATIONS = tuple(models.common.OUTPUT_RANGES)
# Families whose discriminator is the conv one, with its BatchNorm/stride/pool options.
_CONV_D_FAMILIES = ('dcgan', 'upsample')


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


def _rate(config, name, problems):
  value = _get(config, name)
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
    problems.append(f'config.{name}={value!r}: must be a number in [0, 1)')


def _choice(config, name, allowed, problems):
  value = _get(config, name)
  if value not in allowed:
    problems.append(f'config.{name}={value!r}: must be one of {", ".join(allowed)}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `errors.ConfigError` listing every invalid field of `config`; returns None when all are valid."""
  problems = []
  for name in ('batch_size', 'steps_per_call', 'latent_dim', 'num_samples', 'log_every_steps', 'keep_checkpoints',
               'd_steps', 'g_steps', 'g_max_steps', 'd_max_steps', 'data.image_size', 'data.channels'):
    _positive_int(config, name, problems)
  for name in ('eval_num_samples', 'eval_classifier_steps', 'collapse_patience'):
    _positive_int(config, name, problems)
  if not isinstance(config.eval_every_steps, numbers.Integral) or config.eval_every_steps < -1:
    problems.append(f'config.eval_every_steps={config.eval_every_steps!r}: must be an integer >= -1 '
                    '(-1: never, 0: only at the end)')
  for name in ('num_epochs', 'sample_every_steps', 'checkpoint_every_steps', 'checkpoint_every_epochs',
               'data.max_device_bytes', 'data.max_host_bytes'):
    _positive_int(config, name, problems, allow_zero=True)
  if not isinstance(config.num_train_steps, numbers.Integral) or (
      config.num_epochs <= 0 and config.num_train_steps <= 0):
    problems.append(f'config.num_train_steps={config.num_train_steps!r} with config.num_epochs='
                    f'{config.num_epochs!r}: one of them must be > 0')
  _choice(config, 'schedule', schedules.SCHEDULES, problems)
  for name in ('g_target', 'd_target'):
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
      problems.append(f'config.{name}={value!r}: must be a number in [0, 1]')
  _choice(config, 'noise', NOISES, problems)
  _choice(config, 'dtype', DTYPES, problems)
  _choice(config, 'loss', tuple(sorted(losses.LOSSES)), problems)
  _choice(config, 'data.source', SOURCES, problems)
  _choice(config, 'model.name', MODELS, problems)
  _choice(config, 'model.g_activation', ACTIVATIONS, problems)
  _choice(config, 'model.d_activation', ACTIVATIONS, problems)
  _choice(config, 'model.output_activation', OUTPUT_ACTIVATIONS, problems)
  _choice(config, 'model.d_pool', models.POOLS, problems)
  for name in ('label_smoothing', 'model.d_dropout', 'model.g_dropout', 'ema_decay'):
    _rate(config, name, problems)
  _check_loss_options(config, problems)
  _check_regularization(config, problems)
  if config.data.source == 'bundled' and not bundled.has_copy(config.data.name):
    problems.append(f'config.data.name={config.data.name!r}: source=bundled has only '
                    f'{", ".join(bundled.NAMES)}; use --config.data.source=tfds, idx or folder for other data')
  if config.data.source == 'idx' and not config.data.path:
    problems.append('config.data.path is empty: source=idx needs the directory of IDX files '
                    '(--config.data.path=DIR)')
  if config.data.channels not in (1, 3):
    problems.append(f'config.data.channels={config.data.channels!r}: must be 1 or 3')
  for opt in ('g_optimizer', 'd_optimizer'):
    lr, b1, b2 = (config[opt][k] for k in ('learning_rate', 'b1', 'b2'))
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
      problems.append(f'config.{opt}.learning_rate={lr!r}: must be a finite number > 0')
    for k, v in (('b1', b1), ('b2', b2)):
      if not isinstance(v, numbers.Real) or not 0 <= v < 1:
        problems.append(f'config.{opt}.{k}={v!r}: must be in [0, 1)')
  m = config.model
  problems_before_model = len(problems)
  for name in ('g_features', 'd_features'):
    widths = m[name]
    if not widths or not all(isinstance(w, numbers.Integral) and w > 0 for w in widths):
      problems.append(f'config.model.{name}={widths!r}: must be a non-empty list of integers > 0')
  if m.name in _CONV_D_FAMILIES:
    _positive_int(config, 'model.g_start_size', problems, allow_zero=True)
    for name in ('g_kernel_size', 'd_kernel_size'):
      _positive_int(config, f'model.{name}', problems)
    strides = m.d_strides
    if not all(isinstance(s, numbers.Integral) and s >= 1 for s in strides) or (
        strides and len(strides) != len(m.d_features)):
      problems.append(f'config.model.d_strides={strides!r}: must be () or one integer >= 1 per entry of '
                      f'model.d_features ({len(m.d_features)})')
    if len(problems) == problems_before_model:
      _check_generator_size(config, problems)
  if not isinstance(m.leaky_slope, numbers.Real) or not math.isfinite(m.leaky_slope) or m.leaky_slope < 0:
    problems.append(f'config.model.leaky_slope={m.leaky_slope!r}: must be a finite number >= 0')
  if problems:
    raise errors.ConfigError('invalid config:\n  ' + '\n  '.join(problems))


def _check_loss_options(config, problems):
  gan_loss = losses.LOSSES.get(config.loss)
  if gan_loss is None:
    return  # Already reported by the name check.
  smoothing = config.label_smoothing
  if isinstance(smoothing, numbers.Real) and smoothing and not gan_loss.label_smoothing:
    supported = ', '.join(name for name, l in losses.LOSSES.items() if l.label_smoothing)
    problems.append(f'config.label_smoothing={smoothing!r}: loss {config.loss} has no targets to smooth; set it to '
                    f'0 or use one of {supported}')
  if config.loss in RELATIVISTIC_LOSSES and config.schedule != 'alternating':
    problems.append(f'config.loss={config.loss!r}: a relativistic loss compares fakes with the step\'s real batch, '
                    f'which the G-only steps of schedule {config.schedule!r} do not read; use '
                    '--config.schedule=alternating or another loss')
  if gan_loss.gradient_penalty:
    weight = config.gp_weight
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
      problems.append(f'config.gp_weight={weight!r}: must be a finite number >= 0')
    if config.model.name in _CONV_D_FAMILIES and config.model.d_batchnorm:
      problems.append(f'config.model.d_batchnorm=True with loss={config.loss}: the gradient penalty needs a critic '
                      'that scores each example on its own; set --config.model.d_batchnorm=False')


def _check_regularization(config, problems):
  for name in ('r1_weight', 'r2_weight'):
    weight = config.get(name, 0.0)
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
      problems.append(f'config.{name}={weight!r}: must be a finite number >= 0 (0 switches it off)')
  if 'r_every' in config:
    _positive_int(config, 'r_every', problems)
  policy = config.get('diffaugment', '')
  try:
    augment.parse(policy)
  except (ValueError, AttributeError) as e:
    problems.append(f'config.diffaugment={policy!r}: {e if isinstance(e, ValueError) else "must be a string"}; '
                    f"e.g. 'color,translation,cutout' ('' is off)")


def _check_generator_size(config, problems):
  m, size = config.model, config.data.image_size
  if m.name == 'dcgan':
    n = len(m.g_features)
    if m.g_start_size <= 0 and 2 ** n > size:
      problems.append(f'config.model.g_features has {n} entries: {n} doublings overshoot data.image_size={size} even '
                      'from a 1x1 start; use fewer widths')
    elif models.output_size(config) != size:
      out = models.output_size(config)
      problems.append(
          f'config.data.image_size={size}: the dcgan generator makes {out}x{out} images (g_start_size='
          f'{m.g_start_size} doubled {n} times); change model.g_start_size (0 derives it) or model.g_features')
    return
  try:
    models.output_size(config)
  except errors.ConfigError as e:
    problems.append(str(e))
