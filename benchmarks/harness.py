"""The timing harness every benchmark in benchmarks/ shares.

One place for the parts that decide whether a number means anything: waiting for asynchronous work before the
clock stops (`block`: JAX arrays, and CUDA tensors of PyTorch), warm-up calls kept out of the timings, repeated
rounds reported by their median (`Timing`), several variants timed in turn within each round so that load from
other jobs hits them alike (`time_alternating`), compile time (`compile_seconds`), and the report's header lines
(`header`) and Markdown table (`markdown_table`).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from typing import Any, Callable, Hashable, Mapping, Optional, Sequence, TypeVar

import jax

from benchmarks import machine

K = TypeVar('K', bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Timing:
  """Wall-clock seconds of each timed round (warm-up excluded), `calls` calls per round."""

  rounds: tuple[float, ...]
  calls: int = 1

  @property
  def median(self) -> float:
    """Median seconds per round."""
    return statistics.median(self.rounds)

  @property
  def per_call(self) -> float:
    """Median seconds per call."""
    return self.median / self.calls

  def rates(self, items_per_call: float) -> list[float]:
    """Items per second of each round (e.g. images/s with `items_per_call` the batch size)."""
    return [self.calls * items_per_call / seconds for seconds in self.rounds]


def block(value: Any) -> Any:
  """Waits until `value` (a pytree) is computed: JAX arrays, and PyTorch CUDA tensors; returns it.

  PyTorch on the CPU runs synchronously, so its tensors need no wait; on a GPU, its stream is synchronized.
  """
  jax.block_until_ready(value)
  torch = sys.modules.get('torch')
  if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
    torch.cuda.synchronize()
  return value


def time_once(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
  """(seconds, result) of one call of `fn(*args)`, the clock stopped after `block(result)`."""
  start = time.perf_counter()
  result = block(fn(*args))
  return time.perf_counter() - start, result


def _round(fn: Callable[..., Any], args: Sequence[Any], calls: int) -> float:
  """Seconds for `calls` calls of `fn(*args)`, blocking on the last result only (as a training loop does)."""
  start = time.perf_counter()
  result = None
  for _ in range(calls):
    result = fn(*args)
  block(result)
  return time.perf_counter() - start


def time_calls(fn: Callable[..., Any], *args: Any, warmup: int = 1, repeats: int = 5, calls: int = 1) -> Timing:
  """Times `repeats` rounds of `calls` calls of `fn(*args)` after `warmup` blocked calls (the first compiles)."""
  for _ in range(warmup):
    block(fn(*args))
  return Timing(tuple(_round(fn, args, calls) for _ in range(repeats)), calls)


def time_alternating(fns: Mapping[K, Callable[[], Any]], repeats: int, warmup: int = 1,
                     calls: int = 1) -> dict[K, Timing]:
  """Times each of `fns` in turn within each of `repeats` rounds, so that machine-load drift hits all alike.

  Args:
    fns: variant name -> function of no arguments (its result is blocked on).
    repeats: timed rounds.
    warmup: blocked calls of each function, in order, before the first round.
    calls: calls of each function per round; the last one's result is blocked on.

  Returns:
    variant name -> its `Timing`, in the order of `fns`.
  """
  for fn in fns.values():
    for _ in range(warmup):
      block(fn())
  rounds = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      rounds[name].append(_round(fn, (), calls))
  return {name: Timing(tuple(r), calls) for name, r in rounds.items()}


def compile_seconds(jitted: Any, *args: Any) -> tuple[float, Any]:
  """(seconds, compiled) of `jitted.lower(*args).compile()`: ahead-of-time compilation alone, nothing run."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile()
  return time.perf_counter() - start, compiled


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: Optional[str] = None) -> str:
  """A Markdown table; `align` has one letter per column, 'l' (left) or 'r' (right), default all left.

  Cells are written with `str`; format numbers before passing them.
  """
  align = align or 'l' * len(headers)
  if len(align) != len(headers) or any(len(row) != len(headers) for row in rows):
    raise ValueError('every row and `align` need one entry per header')
  rule = ['---:' if a == 'r' else '---' for a in align]
  return '\n'.join(markdown_row(line) for line in [headers, rule, *rows])


def markdown_row(cells: Sequence[Any]) -> str:
  """One Markdown table line, '| a | b |' (for tables printed row by row as results come in)."""
  return '| ' + ' | '.join(str(cell) for cell in cells) + ' |'


def command_line(script: str, argv: Sequence[str]) -> str:
  """'Command: `python benchmarks/<script> args`  ' (Markdown line break), the script's path relative to the repo."""
  path = os.path.relpath(os.path.abspath(script), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return f'Command: `{" ".join(["python", path, *argv])}`  '


def machine_line(*details: str) -> str:
  """'Machine: CPU, cores, jax version (backend, devices)', then `details` (e.g. torch's version), ending '  '."""
  parts = [f'{machine.cpu_model()}, {os.cpu_count()} cores',
           f'jax {jax.__version__} ({jax.default_backend()}, {jax.device_count()} device(s))', *details]
  return f'Machine: {"; ".join(parts)}  '


def header(script: str, argv: Sequence[str], *details: str) -> str:
  """The two lines every report starts with: the command that produced it and the machine it ran on."""
  return command_line(script, argv) + '\n' + machine_line(*details)


def load_average() -> str:
  """The 1-minute load average, formatted (or 'n/a' where the platform has none)."""
  try:
    return f'{os.getloadavg()[0]:.2f}'
  except OSError:
    return 'n/a'


def set_fields(config: Any, changes: Mapping[str, Any]) -> Any:
  """`config` (a ConfigDict, changed in place and returned) with each dotted field of `changes` set to its value,
  e.g. {'model.generator.weight_init': 'pytorch'}."""
  for path, value in changes.items():
    *parents, leaf = path.split('.')
    section = config
    for name in parents:
      section = section[name]
    section[leaf] = value
  return config
