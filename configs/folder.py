"""A 128x128 RGB DCGAN on a folder of your own images (`--config.data.path=DIR`).

G: z -> 4x4x512 -> stride-2 transposed convs (4x4 kernels) 256, 128, 64, 32 -> 3 at 128x128 (BatchNorm,
LeakyReLU(model.leaky_slope), tanh). D mirrors it: stride-2 convs 32, 64, 128, 256, 512 (BatchNorm except on the
first), LeakyReLU -> a 4x4 'VALID' conv to the logit. Adam b1 0.5, G 2e-4 and D 5e-5 (a slower D for small data),
batch 32, 3x3 sample grids, a checkpoint every 50 epochs (all kept); the wall-clock training time is in the last
log line.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.data.source = 'folder'
  config.data.path = ''  # Set with --config.data.path=DIR.
  config.data.image_size = 128
  config.data.channels = 3
  config.batch_size = 32
  config.num_epochs = 500
  config.model.g_start_size = 0  # Derived: 128 / 2**5 = 4.
  config.model.g_features = (512, 256, 128, 64, 32)
  config.model.g_kernel_size = 4
  config.model.d_features = (32, 64, 128, 256, 512)
  config.model.d_kernel_size = 4
  config.model.d_first_batchnorm = False
  config.g_optimizer.learning_rate = 2e-4
  config.d_optimizer.learning_rate = 5e-5
  config.num_samples = 9
  config.checkpoint_every_steps = 0
  config.checkpoint_every_epochs = 50
  config.keep_checkpoints = 10  # Every one of a 500-epoch run.
  return config
