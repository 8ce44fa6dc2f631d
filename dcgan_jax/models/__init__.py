"""Generator and discriminator modules, each built from its own config section as `Family(**fields)`.

`config.model.generator` and `config.model.discriminator` each hold `family` and that family's module fields, under
the module's own attribute names (big_vision style):

* generator families (`GENERATORS`): 'dcgan' (`dcgan.DCGANGenerator`, strided transposed convs up from a small
  start size, any image size: see `dcgan.generator_sizes`), 'upsample' (`upsample.UpsampleGenerator`, a Dense
  projection, nearest upsampling + stride-1 transposed convs) and 'mlp' (`mlp.MLPGenerator`, Dense layers);
* discriminator families (`DISCRIMINATORS`): 'conv' (`dcgan.DCGANDiscriminator`, strided convs or conv +
  max-pool) and 'mlp' (`mlp.MLPDiscriminator`).

What is not per network the builder passes in (`BUILDER_FIELDS`): `channels` and `image_shape` from `data`,
dcgan's crop `output_size` and upsample's `upsamplings` derived from `data.image_size` (and a `start_size` of 0,
which means "derive it", replaced by the derived one), `dtype`, and `num_classes` from the top-level
`config.num_classes` (0: unconditional; > 0: both networks take `labels`, see `common`); the training loop sets
`bn_axis_name`.
`network_config` makes a section with every config field of a family, its defaults taken from the module, so a new
option is one field (with a default) on the module plus its line in docs/configuration.md: configs carry it, the
command line can override it, and `field_problems` accepts it.

Modules hold architecture only; BatchNorm state lives in the explicit `batch_stats` collection, so a caller passes
`{'params': ..., 'batch_stats': ...}` and asks for `mutable=['batch_stats']` in training mode. Every module is
called as `module(x, train, deterministic=None)` (see `common`) and has the fields `bn_axis_name` and `dtype`;
outputs are float32 whatever `dtype` is.
"""

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from dcgan_jax import errors
from dcgan_jax.models import common
from dcgan_jax.models import dcgan
from dcgan_jax.models import mlp
from dcgan_jax.models import upsample
from dcgan_jax.models.common import activation, output_activation  # pylint: disable=unused-import  (public API)
from dcgan_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator  # pylint: disable=unused-import
from dcgan_jax.models.mlp import MLPDiscriminator, MLPGenerator  # pylint: disable=unused-import
from dcgan_jax.models.upsample import UpsampleGenerator  # pylint: disable=unused-import

POOLS = dcgan.POOLS
INITS = common.INITS
GENERATORS: dict[str, type[nn.Module]] = {'dcgan': DCGANGenerator, 'upsample': UpsampleGenerator, 'mlp': MLPGenerator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {'conv': DCGANDiscriminator, 'mlp': MLPDiscriminator}
NETWORKS = {'generator': GENERATORS, 'discriminator': DISCRIMINATORS}
# Module fields that a config section never sets: passed by `build_network` or the training loop (see above).
BUILDER_FIELDS = ('channels', 'image_shape', 'output_size', 'upsamplings', 'num_classes', 'bn_axis_name',
                  'dtype')
_FLAX_FIELDS = ('parent', 'name')


def config_fields(module: type[nn.Module]) -> tuple[str, ...]:
  """The fields of a module class that its config section sets, in declaration order (`family` not included)."""
  skip = BUILDER_FIELDS + _FLAX_FIELDS
  return tuple(f.name for f in dataclasses.fields(module) if f.init and f.name not in skip)


def _required(module: type[nn.Module]) -> tuple[str, ...]:
  return tuple(f.name for f in dataclasses.fields(module) if f.name in config_fields(module)
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def field_problems(network: str, section: Mapping[str, Any]) -> list[str]:
  """One line per structural problem of `config.model.<network>`: an unknown family, a field its module does not
  have (naming the valid ones), a required field missing. Values are not checked (`config_validation` does)."""
  where, families = f'config.model.{network}', NETWORKS[network]
  family = section.get('family')
  if family not in families:
    return [f'{where}.family={family!r}: must be one of {", ".join(families)}']
  module = families[family]
  valid = config_fields(module)
  problems = []
  for name in section:
    if name != 'family' and name not in valid:
      owners = [f for f, m in families.items() if name in config_fields(m)]
      hint = (f' ({name} belongs to the {" and ".join(owners)} {network}{"s" if len(owners) > 1 else ""}; to change '
              'family, start from a config of that family: docs/configuration.md)' if owners else '')
      problems.append(f'{where}.{name}: the {family} {network} ({module.__name__}) has no field {name}; its fields: '
                      f'family, {", ".join(valid)}{hint}')
  missing = [name for name in _required(module) if name not in section]
  if missing:
    problems.append(f'{where}: the {family} {network} ({module.__name__}) needs {", ".join(missing)}')
  return problems


def network_config(network: str, family: str, **fields: Any) -> ml_collections.ConfigDict:
  """A `config.model.<network>` section: `family` and every config field of its module, `fields` overriding the
  module's defaults (required fields, such as the widths `features`, must be given).

  Raises:
    errors.ConfigError: an unknown network or family, a field the module does not have, a required field missing.
  """
  if network not in NETWORKS:
    raise errors.ConfigError(f'network {network!r}: must be one of {", ".join(NETWORKS)}')
  problems = field_problems(network, {'family': family, **fields})
  if problems:
    raise errors.ConfigError('; '.join(problems))
  module = NETWORKS[network][family]
  defaults = {f.name: f.default for f in dataclasses.fields(module) if f.default is not dataclasses.MISSING}
  values = {name: fields[name] if name in fields else defaults[name] for name in config_fields(module)}
  return ml_collections.ConfigDict({'family': family, **values})


def _section(config: ml_collections.ConfigDict, network: str) -> dict[str, Any]:
  """`config.model.<network>` as keyword arguments (lists as tuples: module fields must be hashable)."""
  section = config.model[network]
  return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}


def _generator_shape(family: str, fields: dict[str, Any], image_size: int, channels: int) -> dict[str, Any]:
  """The generator fields derived from the data's shape (see `BUILDER_FIELDS`)."""
  if family == 'dcgan':
    start, _ = dcgan.generator_sizes(image_size, fields['start_size'], len(fields['features']))
    return {'start_size': start, 'channels': channels, 'output_size': image_size if fields['start_size'] <= 0 else 0}
  if family == 'upsample':
    start, n = upsample.generator_sizes(image_size, fields['start_size'], len(fields['features']))
    return {'start_size': start, 'upsamplings': n, 'channels': channels}
  return {'image_shape': (image_size, image_size, channels)}


def build_network(config: ml_collections.ConfigDict, network: str) -> nn.Module:
  """The module of `config.model.<network>` ('generator' or 'discriminator'): `Family(**fields, **derived)`.

  The generator maps z float32 [B, latent_dim] to images float32 [B, S, S, channels] (S = `output_size(config)`)
  in `data_range(config)`; the discriminator maps such images to logits float32 [B].

  Raises:
    errors.ConfigError: the section has an unknown family or field, or misses a required one (one line each).
  """
  fields = _section(config, network)
  problems = field_problems(network, fields)
  if problems:
    raise errors.ConfigError('invalid config:\n  ' + '\n  '.join(problems))
  family = fields.pop('family')
  derived: dict[str, Any] = {'dtype': jnp.dtype(config.dtype)}
  if config.get('num_classes', 0):
    derived['num_classes'] = int(config.num_classes)
  if network == 'generator':
    derived.update(_generator_shape(family, fields, config.data.image_size, config.data.channels))
  return NETWORKS[network][family](**{**fields, **derived})


def build(config: ml_collections.ConfigDict) -> tuple[nn.Module, nn.Module]:
  """Returns `(generator, discriminator)` built from `config.model.generator` and `config.model.discriminator`."""
  return build_network(config, 'generator'), build_network(config, 'discriminator')


def output_size(config: ml_collections.ConfigDict) -> int:
  """The image size (height = width) the configured generator produces.

  Raises:
    errors.ConfigError: (upsample family) `model.generator.start_size` cannot reach `data.image_size`.
  """
  g, size = config.model.generator, config.data.image_size
  if g.family == 'dcgan':
    if g.start_size <= 0:
      return size  # Derived start, cropped to the exact size.
    return dcgan.generator_sizes(size, g.start_size, len(g.features))[1]
  if g.family == 'upsample':
    start, n = upsample.generator_sizes(size, g.start_size, len(g.features))
    return start * 2 ** n
  if g.family == 'mlp':
    return size
  raise errors.ConfigError(f'config.model.generator.family={g.family!r}: must be one of {", ".join(GENERATORS)}')


def data_range(config: ml_collections.ConfigDict) -> tuple[float, float]:
  """The range `(lo, hi)` of the generator's output, which the real images are scaled to."""
  return common.OUTPUT_RANGES[config.model.generator.output_activation]


def count_params(tree: Any) -> int:
  """Number of scalar values in a pytree of arrays (or of `jax.ShapeDtypeStruct`s)."""
  return sum(int(x.size) for x in jax.tree.leaves(tree))
