"""Checks every config field before any data is read or anything is compiled.

ml_collections already rejects unknown override keys and wrong types on the command line; this adds ranges and
names, and reports every problem at once, one line each, naming the field and what it accepts. The networks'
sections (`config.model.generator`, `config.model.discriminator`) are checked against their module's own fields
(`models.field_problems`: an unknown family or field, a required one missing), then by field name
(`_FIELD_CHECKS`, for whichever family has the field).
"""

import math
import numbers
import os

import ml_collections

from dcgan_jax import augment
from dcgan_jax import backend
from dcgan_jax.data import bundled
from dcgan_jax import errors
from dcgan_jax.data import input_pipeline
from dcgan_jax import losses
from dcgan_jax import models
from dcgan_jax.trainer import schedules

SOURCES = input_pipeline.SOURCES
NOISES = ('uniform', 'normal')
# Built-in losses whose G loss reads D's logits of the real batch.
RELATIVISTIC_LOSSES = ('rpgan', 'ragan')
DTYPES = ('float32', 'bfloat16')
ACTIVATIONS = models.common.ACTIVATIONS
OUTPUT_ACTIVATIONS = tuple(models.common.OUTPUT_RANGES)


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


def _inception_weights(config: ml_collections.ConfigDict, problems: list[str]) -> None:
  weights = config.eval_inception_weights
  if not isinstance(weights, str):
    problems.append(f'config.eval_inception_weights={weights!r}: must be a path (str) or \'\' (off)')
  elif weights and not os.path.isfile(os.path.expanduser(weights)):
    problems.append(f'config.eval_inception_weights={weights!r}: no such file; pass pytorch-fid\'s '
                    'pt_inception-2015-12-05-6726825d.pth (or its converted .npz, see docs/evaluation.md) or \'\'')


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises `errors.ConfigError` listing every invalid field of `config`; returns None when all are valid."""
  problems = []
  for name in ('batch_size', 'steps_per_call', 'latent_dim', 'num_samples', 'log_every_steps', 'keep_checkpoints',
               'd_steps', 'g_steps', 'g_max_steps', 'd_max_steps', 'data.image_size', 'data.channels'):
    _positive_int(config, name, problems)
  for name in ('eval_num_samples', 'eval_classifier_steps', 'collapse_patience', 'eval_inception_num_real'):
    _positive_int(config, name, problems)
  _inception_weights(config, problems)
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
  _choice(config, 'cpu_conv', backend.CPU_CONV_MODES, problems)
  _choice(config, 'loss', tuple(sorted(losses.LOSSES)), problems)
  _choice(config, 'data.source', SOURCES, problems)
  for name in ('label_smoothing', 'ema_decay'):
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
  _check_model(config, problems)
  _check_conditional(config, problems)
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
    if config.model.get('discriminator', {}).get('batchnorm', False) is True:
      problems.append(f'config.model.discriminator.batchnorm=True with loss={config.loss}: the gradient penalty needs '
                      'a critic that scores each example on its own; set --config.model.discriminator.batchnorm=False')


def _check_conditional(config, problems):
  num_classes = config.get('num_classes', 0)
  if not _is_int(num_classes, 0) or num_classes == 1:
    problems.append(f'config.num_classes={num_classes!r}: must be 0 (unconditional) or an integer >= 2 (the '
                    'number of classes)')
  elif num_classes and config.schedule == 'adaptive':
    problems.append(f'config.num_classes={num_classes} with schedule=adaptive: the adaptive checks are not '
                    'class-conditional; use --config.schedule=alternating or epoch_blocks')
  weight = config.get('class_loss_weight', 0.0)
  if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
    problems.append(f'config.class_loss_weight={weight!r}: must be a finite number >= 0 (0 switches it off)')
  elif weight > 0 and not num_classes:
    problems.append(f'config.class_loss_weight={weight!r} with num_classes=0: the classification loss needs classes; '
                    'set config.num_classes (a conditional config) or config.class_loss_weight=0')
  generator = config.get('model', {}).get('generator', {})
  if generator.get('conditional_batchnorm', False) and not num_classes:
    problems.append('config.model.generator.conditional_batchnorm=True with num_classes=0: it needs classes; set '
                    'config.num_classes (a conditional config) or drop it')


def _is_int(value, minimum):
  return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def _is_number(value, low, high):
  """A finite real number (not a bool) in [low, high)."""
  return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
          and low <= value < high)


# Range checks of the network fields, by field name, for whichever family has the field: (accepts, what it accepts).
# A field not named here is checked only by its type (ml_collections).
_FIELD_CHECKS = {
    'features': (lambda v: bool(v) and all(_is_int(w, 1) for w in v), 'must be a non-empty list of integers > 0'),
    'kernel_size': (lambda v: _is_int(v, 1), 'must be an integer > 0'),
    'start_size': (lambda v: _is_int(v, 0), 'must be an integer >= 0 (0 derives it from data.image_size)'),
    'leaky_slope': (lambda v: _is_number(v, 0, math.inf), 'must be a finite number >= 0'),
    'bn_momentum': (lambda v: _is_number(v, 0, 1), 'must be a number in [0, 1)'),
    'bn_epsilon': (lambda v: _is_number(v, 0, math.inf) and v > 0, 'must be a finite number > 0'),
    'dropout': (lambda v: _is_number(v, 0, 1), 'must be a number in [0, 1)'),
    'activation': (lambda v: v in ACTIVATIONS, f'must be one of {", ".join(ACTIVATIONS)}'),
    'output_activation': (lambda v: v in OUTPUT_ACTIVATIONS, f'must be one of {", ".join(OUTPUT_ACTIVATIONS)}'),
    'pool': (lambda v: v in models.POOLS, f'must be one of {", ".join(models.POOLS)}'),
    'weight_init': (lambda v: v in models.INITS, f'must be one of {", ".join(models.INITS)}'),
    'output_weight_init': (lambda v: v in ('',) + tuple(models.INITS),
                           f"must be '' (as weight_init) or one of {', '.join(models.INITS)}"),
}
MODEL_KEYS = ('generator', 'discriminator', 'sync_batchnorm', 'sample_use_batch_stats')


def _check_model(config, problems):
  """`config.model`: its keys, each network's family and fields (named after its module's), their ranges, and
  whether the generator reaches `data.image_size`."""
  before = len(problems)
  for key in config.model:
    if key not in MODEL_KEYS:
      problems.append(f'config.model.{key}: not a field; config.model has {", ".join(MODEL_KEYS)} (the networks\' '
                      'fields are under model.generator and model.discriminator, see docs/configuration.md)')
  for network in ('generator', 'discriminator'):
    if network not in config.model:
      problems.append(f'config.model.{network} is missing: set it with models.network_config (see configs/default.py)')
      continue
    section = config.model[network]
    structural = models.field_problems(network, section)
    problems.extend(structural)
    if structural:
      continue
    for name, value in section.items():
      accepts, needs = _FIELD_CHECKS.get(name, (lambda v: True, ''))
      if not accepts(value):
        problems.append(f'config.model.{network}.{name}={value!r}: {needs}')
    strides = section.get('strides', ())
    if not all(_is_int(s, 1) for s in strides) or (strides and len(strides) != len(section.features)):
      problems.append(f'config.model.{network}.strides={strides!r}: must be () or one integer >= 1 per entry of '
                      f'model.{network}.features ({len(section.features)})')
  if len(problems) == before:
    _check_generator_size(config, problems)


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
  g, size = config.model.generator, config.data.image_size
  if g.family == 'dcgan':
    n = len(g.features)
    if g.start_size <= 0 and 2 ** n > size:
      problems.append(f'config.model.generator.features has {n} entries: {n} doublings overshoot '
                      f'data.image_size={size} even from a 1x1 start; use fewer widths')
    elif models.output_size(config) != size:
      out = models.output_size(config)
      problems.append(
          f'config.data.image_size={size}: the dcgan generator makes {out}x{out} images (start_size={g.start_size} '
          f'doubled {n} times); change model.generator.start_size (0 derives it) or model.generator.features')
    return
  try:
    models.output_size(config)
  except errors.ConfigError as e:
    problems.append(str(e))
