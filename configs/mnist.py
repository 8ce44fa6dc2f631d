"""The TensorFlow DCGAN for MNIST (28x28x1): the defaults, named for the command line.

Initial weights stay flax's (`model.*.weight_init='flax'`). PyTorch's (`'pytorch'`) scored better at equal steps on
two of three seeds but collapsed to 3 classes on the third (seed 0, this config's), where flax's never did:
`benchmarks/quality.py`, docs/evaluation.md ("Quality against the PyTorch reference").
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  return config
