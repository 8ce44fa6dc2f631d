"""The PyTorch DCGAN example's 64x64 architecture at 32x32, on TFDS `cifar10`.

G: z ~ N(0, 1) -> 4x4 transposed conv 'VALID' to 4x4x256 -> stride-2 4x4 transposed convs 128, 64 -> 3 at 32x32
(BatchNorm, ReLU; tanh). D: stride-2 4x4 convs 64, 128, 256 (BatchNorm except on the first, LeakyReLU 0.2) -> 4x4
'VALID' conv to the logit. PyTorch's BatchNorm settings (momentum 0.1, i.e. 0.9 here; epsilon 1e-5), Adam 2e-4,
b1 0.5, batch 128.
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'cifar10'
  config.data.image_size = 32
  config.data.channels = 3
  config.noise = 'normal'
  g, d = config.model.generator, config.model.discriminator
  g.start_size = 4
  g.features = (256, 128, 64)
  g.kernel_size = 4
  g.activation = 'relu'
  d.features = (64, 128, 256)
  d.kernel_size = 4
  d.first_batchnorm = False
  g.bn_momentum = d.bn_momentum = 0.9
  g.bn_epsilon = d.bn_epsilon = 1e-5
  return config
