"""The TensorFlow 'vanilla GAN' on MNIST: one hidden Dense layer of 128 on each side, no BatchNorm.

G: z 100 -> Dense 128, ReLU -> Dense 784, tanh -> 28x28x1. D: 784 -> Dense 128, ReLU -> Dense 1 (a logit).
"""

from dcgan_jax import models
from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  config.model.generator = models.network_config('generator', 'mlp', features=(128,), activation='relu',
                                                 batchnorm=False, output_activation='tanh')
  config.model.discriminator = models.network_config('discriminator', 'mlp', features=(128,), activation='relu')
  return config
