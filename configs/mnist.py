"""The TensorFlow DCGAN for MNIST (28x28x1): the defaults, named for the command line."""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  return config
