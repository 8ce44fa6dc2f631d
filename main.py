"""Command line entry point: `python main.py --config=configs/mnist.py --workdir=DIR [--config.FIELD=VALUE ...]`.

The program is `dcgan_jax.cli.train` (also installed as `dcgan-train`); flags: `python main.py --help`.
"""

from dcgan_jax.cli import train

if __name__ == '__main__':
  train.run()
