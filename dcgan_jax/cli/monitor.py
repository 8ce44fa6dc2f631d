"""Writes a run's summary pictures (the progress GIF of its sample grids, the plot of its curves) on demand, also
while it trains (also installed as `dcgan-monitor`):

  python -m dcgan_jax.cli.monitor WORKDIR
"""

import sys

from dcgan_jax.trainer import monitor


def run(argv: list[str] | None = None) -> None:
  """The console entry point; `argv` defaults to `sys.argv`."""
  argv = sys.argv if argv is None else argv
  if len(argv) != 2:
    sys.exit('usage: python -m dcgan_jax.cli.monitor WORKDIR')
  for written in monitor.write_summary(argv[1]):
    print(written)


if __name__ == '__main__':
  run()
