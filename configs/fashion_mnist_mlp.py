"""The MLP GAN on Fashion-MNIST (28x28x1, data in [0, 1] for the sigmoid generator).

G: 100 -> Dense 256, LeakyReLU, BatchNorm -> 512 -> 1024 (same) -> Dense 784, sigmoid. D: flatten -> 512 -> 256
(LeakyReLU) -> 1. Batch 64.
"""

from dcgan_jax import models
from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'fashion_mnist'
  config.batch_size = 64
  config.noise = 'normal'
  config.model.generator = models.network_config('generator', 'mlp', features=(256, 512, 1024),
                                                 output_activation='sigmoid')
  config.model.discriminator = models.network_config('discriminator', 'mlp', features=(512, 256))
  return config
