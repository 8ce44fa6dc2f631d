"""The TensorFlow 'vanilla GAN' on MNIST: one hidden Dense layer of 128 on each side, no BatchNorm.

G: z 100 -> Dense 128, ReLU -> Dense 784, tanh -> 28x28x1. D: 784 -> Dense 128, ReLU -> Dense 1 (a logit).
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  config.model.name = 'mlp'
  config.model.g_features = (128,)
  config.model.g_activation = 'relu'
  config.model.g_batchnorm = False
  config.model.d_features = (128,)
  config.model.d_activation = 'relu'
  config.model.output_activation = 'tanh'
  return config
