"""Populations: many runs that differ in seeds and swept values, trained as one compiled program.

    population = create_population(config, [0, 1, 2, 3], **{'g_optimizer.learning_rate': [1e-4, 2e-4, 4e-4, 8e-4]})
    step = jax.jit(jax.vmap(train.train_step, in_axes=(0, None)))   # every member sees the same batch
    population, metrics = step(population, batch)                  # metrics: float32 [4] each

Member i is `train_state.create_train_state(config_i, jax.random.key(seeds[i]))`, config_i being `config` with member i's
values, stacked along a new leading axis; trained under `vmap` it follows the single run on the same batches (up to
float rounding). Only fields the state holds as data can differ between members: `g_optimizer.learning_rate`,
`d_optimizer.learning_rate`, `label_smoothing`, `gp_weight`, `ema_decay`, `r1_weight`, `r2_weight`,
`class_loss_weight` (and `seed`, through `seeds`). A field that changes the program (a layer width, the loss,
Adam's betas) is refused, naming it; so is a switch of an optional part (`OPTIONAL`: 0 switches it off, a different
state layout) between members: all 0 or all > 0.
"""

import copy
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections


from dcgan_jax import train_state

SWEEPABLE = ('g_optimizer.learning_rate', 'd_optimizer.learning_rate', 'label_smoothing', 'gp_weight', 'ema_decay',
             'r1_weight', 'r2_weight', 'class_loss_weight')
# Sweepable fields whose 0 switches a part of the state off (None): members must agree on on or off.
OPTIONAL = ('ema_decay', 'r1_weight', 'r2_weight', 'class_loss_weight')


def _member_config(config: ml_collections.ConfigDict, values: dict[str, Sequence[Any]], i: int):
  member = copy.deepcopy(config)
  for field, column in values.items():
    *parents, name = field.split('.')
    node = member
    for parent in parents:
      node = node[parent]
    if name not in node:
      raise KeyError(f'create_population: config has no field {field!r}')
    node[name] = type(node[name])(column[i]) if isinstance(node[name], float) else column[i]
  return member


def create_population(config: ml_collections.ConfigDict, seeds: Sequence[int],
                      **values: Sequence[Any]) -> train_state.TrainState:
  """A stacked `TrainState` of len(seeds) members, for `jax.vmap(train.train_step, in_axes=(0, None))`.

  Args:
    config: the shared config.
    seeds: one PRNG seed per member (int); member i starts from `jax.random.key(seeds[i])`.
    **values: config field name (dotted, e.g. 'g_optimizer.learning_rate') -> one value per member. Pass dotted
      names with `**{...}`.

  Returns:
    A `TrainState` whose array leaves have a leading axis of size len(seeds).

  Raises:
    ValueError: a value list has the wrong length, or a field is not data (`SWEEPABLE` lists those that are).
  """
  for field, column in values.items():
    if len(column) != len(seeds):
      raise ValueError(f'create_population: {field} has {len(column)} values for {len(seeds)} seeds')
    if field not in SWEEPABLE:
      raise ValueError(f'create_population: {field} is not data in the train state (it changes the compiled '
                       f'program); members can differ in {", ".join(SWEEPABLE)} and their seeds')
    if field in OPTIONAL and len({float(v) > 0 for v in column}) > 1:
      raise ValueError(f'create_population: {field}={list(column)} switches its option off (0) for some members '
                       'only, which changes the state layout; use values that are all > 0 or all 0')
  members = [train_state.create_train_state(_member_config(config, values, i), jax.random.key(seed))
             for i, seed in enumerate(seeds)]
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)


def member(population: train_state.TrainState, i: int) -> train_state.TrainState:
  """Member i of a stacked population, as a single `TrainState` (e.g. to `generate` from or export)."""
  return jax.tree.map(lambda leaf: leaf[i], population)
