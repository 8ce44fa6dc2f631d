"""The MNIST DCGAN of `mnist.py` (the TensorFlow DCGAN tutorial's networks) on Fashion-MNIST, 28x28x1."""

from dcgan_jax.configs import mnist


def get_config():
  config = mnist.get_config()
  config.data.name = 'fashion_mnist'
  # flax's initialization, as in the runs measured on Fashion-MNIST (docs/evaluation.md); mnist.py's PyTorch-drawn
  # networks were measured on MNIST only.
  config.model.generator.weight_init = config.model.discriminator.weight_init = 'flax'
  config.model.generator.output_weight_init = ''
  return config
