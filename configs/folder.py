"""A 128x128 RGB DCGAN on a folder of your own images (`--config.data.path=DIR`); `--config=configs/folder.py:64`
(any 4 * 2**n) makes the same family at that size.

G at 128: z -> 4x4x512 -> stride-2 transposed convs (4x4 kernels) 256, 128, 64, 32 -> 3 at 128x128 (BatchNorm,
LeakyReLU(leaky_slope), tanh). D mirrors it: stride-2 convs 32, 64, 128, 256, 512 (BatchNorm except on the
first), LeakyReLU -> a 4x4 'VALID' conv to the logit. At any size S = 4 * 2**n both start at (end at) 4x4x512 and
halve (double) the width per doubling of the size, so 64 gives the PyTorch DCGAN example's 512-256-128-64 G and
64-128-256-512 D. Adam b1 0.5, G 2e-4 and D 5e-5 (a slower D for small data),
batch 32, 3x3 sample grids, a checkpoint every 50 epochs (all kept); the wall-clock training time is in the last
log line.
"""

from dcgan_jax.configs import default


def get_config(size: str = '128'):
  """`size`: the image size, from `--config=configs/folder.py:SIZE`; 4 times a power of two, >= 8."""
  config = default.get_config()
  image_size = int(size) if str(size).isdigit() else 0
  depth = (image_size // 4).bit_length() - 1
  if image_size < 8 or 4 * 2 ** depth != image_size:
    raise ValueError(f'configs/folder.py:{size}: the size must be 4 times a power of two (8, 16, ..., 64, 128, 256)')
  widths = tuple(512 // 2 ** i for i in range(depth))  # 4x4 has 512 features; each doubling halves them.
  config.data.source = 'folder'
  config.data.path = ''  # Set with --config.data.path=DIR.
  config.data.image_size = image_size
  config.data.channels = 3
  config.batch_size = 32
  config.num_epochs = 500
  g, d = config.model.generator, config.model.discriminator
  g.start_size = 4
  g.features = widths
  g.kernel_size = 4
  d.features = widths[::-1]
  d.kernel_size = 4
  d.first_batchnorm = False
  config.g_optimizer.learning_rate = 2e-4
  config.d_optimizer.learning_rate = 5e-5
  config.num_samples = 9
  config.checkpoint_every_steps = 0
  config.checkpoint_every_epochs = 50
  config.keep_checkpoints = 10  # Every one of a 500-epoch run.
  return config
