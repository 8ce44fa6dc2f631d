"""A GAN on TFDS `rock_paper_scissors` (300x300x3 hand photos) with a Keras-classifier-style discriminator.

G: the DCGAN generator with a derived start: five stride-2 transposed convs from 10x10 make 320x320, center-cropped
to exactly 300x300. D: four blocks of 3x3 conv (stride 1) + 2x2 max-pool + LeakyReLU + dropout 0.3 (64, 64, 128,
128 filters: 300 -> 150 -> 75 -> 38 -> 19), no BatchNorm, then the logit. Batch 32, Adam 2e-4, b1 0.5 (separate
optimizers). Schedule: epoch blocks, as the write-up trained: G for an epoch's worth of steps, then D over the
epoch's batches. Samples come from the same fixed noise at the end of every epoch.
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'rock_paper_scissors'
  config.data.image_size = 300
  config.data.channels = 3
  config.batch_size = 32
  config.num_epochs = 100
  config.noise = 'normal'
  g, d = config.model.generator, config.model.discriminator
  g.start_size = 0  # Derived: ceil(300 / 2**5) = 10, 320 cropped to 300.
  g.features = (256, 128, 64, 32, 16)
  g.kernel_size = 4
  d.features = (64, 64, 128, 128)
  d.kernel_size = 3
  d.pool = 'max'
  d.batchnorm = False
  d.dropout = 0.3
  config.num_samples = 16
  config.schedule = 'epoch_blocks'
  return config
