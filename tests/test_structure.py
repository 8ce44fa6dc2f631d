"""The package's shape: no import cycles, no private names used across modules, no `jax._src`, no function over
80 lines, a docstring in every module. Read from the source with `ast`, so it covers imports inside functions too."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'dcgan_jax'
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, ast.Module]:
  modules = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    if 'configs' in path.relative_to(PACKAGE).parts:
      continue  # The configs link: not package code.
    parts = ('dcgan_jax',) + path.relative_to(PACKAGE).with_suffix('').parts
    name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
    modules[name] = ast.parse(path.read_text(), filename=str(path))
  return modules


MODULES = _modules()


def _imports(tree: ast.Module) -> list[tuple[str, str]]:
  """(module imported, name taken from it or '') for every dcgan_jax import, at any depth."""
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found += [(alias.name, '') for alias in node.names if alias.name.startswith('dcgan_jax')]
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('dcgan_jax'):
      found += [(node.module, alias.name) for alias in node.names]
  return found


def _edges(name: str) -> set[str]:
  """The package modules that module `name` imports (a submodule imported by name counts as that submodule)."""
  targets = set()
  for module, member in _imports(MODULES[name]):
    full = f'{module}.{member}'
    targets.add(full if full in MODULES else module)
  return targets - {name}


def _cycle_from(start: str) -> list[str]:
  stack, seen = [(start, [start])], set()
  while stack:
    node, path = stack.pop()
    for target in _edges(node):
      if target == start:
        return path + [start]
      if target not in seen and target in MODULES:
        seen.add(target)
        stack.append((target, path + [target]))
  return []


def test_the_checks_see_the_package():
  assert {'dcgan_jax', 'dcgan_jax.trainer.loop', 'dcgan_jax.train', 'dcgan_jax.models'} <= set(MODULES)
  assert 'dcgan_jax.trainer.loop' in _edges('dcgan_jax')  # __init__ re-exports train_and_evaluate from it.


def test_no_import_cycles():
  cycles = [' -> '.join(c) for c in map(_cycle_from, MODULES) if c]
  assert not cycles, cycles


def test_no_private_names_across_modules_and_no_jax_src():
  offenders = []
  for name, tree in MODULES.items():
    imported = {}
    for module, member in _imports(tree):
      if member.startswith('_') and not member.startswith('__'):
        offenders.append(f'{name}: from {module} import {member}')
      if f'{module}.{member}' in MODULES:
        imported[member] = f'{module}.{member}'
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
          and node.attr.startswith('_') and not node.attr.startswith('__')):
        offenders.append(f'{name}: {imported[node.value.id]}.{node.attr}')
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        names = [node.module or ''] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
        offenders += [f'{name}: imports {n}' for n in names if n.startswith('jax._src')]
  assert not offenders, offenders


def test_no_function_over_80_lines_and_a_docstring_in_every_module():
  long = [f'{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines'
          for name, tree in MODULES.items() for node in ast.walk(tree)
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
  assert not long, long
  assert [name for name, tree in MODULES.items() if not ast.get_docstring(tree)] == []
