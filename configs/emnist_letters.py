"""The Keras EMNIST-letters GAN (UpSampling2D + Conv2DTranspose generator), on TFDS `emnist/letters`, 28x28x1.

G (2,394,241 values, Keras counting): z 100 -> Dense 7*7*256, LeakyReLU(0.01), BatchNorm -> reshape -> Dropout 0.4
-> UpSampling x2, Conv2DTranspose 128 5x5 -> UpSampling x2, Conv2DTranspose 64 -> Conv2DTranspose 32 (each
LeakyReLU, BatchNorm) -> Conv2DTranspose 1, tanh. D (4,311,553): Conv 64, 128, 256 5x5 stride 2 and 512 5x5
stride 1, each LeakyReLU(0.01) + Dropout 0.4 -> flatten -> Dense 1. Adam(2e-4, b1=0.5) for both, the usual Keras
GAN setting; batch 128; normal noise. Schedule: adaptive, as the write-up trained: G until it fools D on 20% of a
fresh batch, then D until its accuracy reaches 50%.
"""

from dcgan_jax import models
from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'emnist/letters'
  config.data.transpose = True  # EMNIST stores its characters transposed.
  config.noise = 'normal'
  config.model.generator = models.network_config(
      'generator', 'upsample', start_size=7, features=(256, 128, 64, 32), kernel_size=5, dropout=0.4,
      leaky_slope=0.01)
  d = config.model.discriminator  # The conv discriminator of default.py.
  d.features = (64, 128, 256, 512)
  d.strides = (2, 2, 2, 1)
  d.kernel_size = 5
  d.batchnorm = False
  d.dropout = 0.4
  d.leaky_slope = 0.01
  config.schedule = 'adaptive'  # g_target 0.2 and d_target 0.5 are the defaults.
  return config
