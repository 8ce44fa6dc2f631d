"""Every config field, defined once with its meaning. Variants import `get_config()` and override what differs.

The defaults are the TensorFlow DCGAN for MNIST (28x28x1, data in [-1, 1]).
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config; every user-visible option is a field here."""
  config = ml_collections.ConfigDict()

  config.seed = 0  # Seeds parameter init, noise, and the per-epoch data order.
  config.num_epochs = 20  # Passes over the training split.
  config.num_train_steps = -1  # If > 0, stop after this many steps instead of `num_epochs` epochs.
  config.batch_size = 128  # Global batch, split evenly over all devices.
  config.steps_per_call = 1  # Train steps fused into one compiled call (lax.scan); > 1 helps small models.
  config.latent_dim = 100  # Size of the noise vector z.
  config.noise = 'uniform'  # 'uniform' (in [-1, 1], as the original) or 'normal'.
  config.loss = 'non_saturating'  # GAN loss, computed from logits.
  # Computation dtype: 'float32', or 'bfloat16' (mixed precision for GPU/TPU: bfloat16 matmuls and convolutions,
  # float32 parameters, optimizer states, BatchNorm statistics and losses).
  config.dtype = 'float32'

  # Data.
  config.data = ml_collections.ConfigDict()
  config.data.source = 'tfds'  # 'tfds' or 'idx' (a directory of MNIST-format IDX files).
  config.data.name = 'mnist'  # TFDS dataset name (source=tfds).
  config.data.split = 'train'  # 'train' or 'test' (idx: test reads the t10k files); any TFDS split for tfds.
  config.data.path = ''  # Directory of IDX files (source=idx).
  config.data.data_dir = ''  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets).
  config.data.image_size = 28  # Height and width of the images.
  config.data.channels = 1  # 1 (grayscale) or 3 (RGB).
  # Datasets up to this size (uint8 bytes) are put on the device once and batched there; larger ones are batched on
  # the host and sent each step. 0 keeps every dataset on the host.
  config.data.max_device_bytes = 1 << 30

  # Model: the DCGAN family. Widths and kernels come from here, never from literals in the modules.
  config.model = ml_collections.ConfigDict()
  config.model.name = 'dcgan'  # Network family: 'dcgan' (convolutional) or 'mlp' (dense layers).
  # Generator: z as 1x1 -> transposed conv 'VALID' to g_start_size -> one stride-2 transposed conv per entry of
  # g_features (each doubles the size) -> stride-2 transposed conv to `channels`, with bias -> tanh.
  config.model.g_start_size = 7  # Spatial size after the first generator layer.
  config.model.g_features = (256, 128)  # Widths: first entry after the first layer, then one per upsampling.
  config.model.g_kernel_size = 5  # Kernel of the stride-2 transposed convs.
  # Discriminator: one stride-2 conv per entry of d_features, then a 'VALID' conv over what is left to 1 logit.
  # (mlp family: g_features and d_features are the hidden Dense widths.)
  config.model.d_features = (128, 256)
  config.model.d_kernel_size = 5
  config.model.d_first_batchnorm = True  # BatchNorm after the first D conv (the MNIST DCGAN has it).
  config.model.leaky_slope = 0.2  # LeakyReLU negative slope, both networks.
  config.model.g_activation = 'leaky_relu'  # Generator hidden layers: 'leaky_relu' or 'relu'.
  config.model.d_activation = 'leaky_relu'  # Discriminator hidden layers (mlp family): 'leaky_relu' or 'relu'.
  # Generator output: 'tanh' (real images scaled to [-1, 1]) or 'sigmoid' (real images scaled to [0, 1]).
  config.model.output_activation = 'tanh'
  config.model.g_batchnorm = True  # BatchNorm in the generator's hidden layers (mlp family; dcgan always has it).
  config.model.bn_momentum = 0.99  # BatchNorm running-average momentum (Keras default).
  config.model.bn_epsilon = 1e-3  # BatchNorm epsilon (Keras default).
  config.model.sync_batchnorm = True  # BatchNorm statistics over the global batch (True) or per device (False).
  # Sampling (grids, `generate`): normalize with the batch's statistics, as the original did, or running averages.
  config.model.sample_use_batch_stats = True

  # Optimizers: separate Adam for G and D.
  config.g_optimizer = ml_collections.ConfigDict()
  config.g_optimizer.learning_rate = 2e-4
  config.g_optimizer.b1 = 0.5
  config.g_optimizer.b2 = 0.999
  config.d_optimizer = ml_collections.ConfigDict()
  config.d_optimizer.learning_rate = 2e-4
  config.d_optimizer.b1 = 0.5
  config.d_optimizer.b2 = 0.999

  # Outputs.
  config.log_every_steps = 100  # Progress line and scalars.
  config.sample_every_steps = 0  # Extra sample grids every N steps (0: only at the end of each epoch).
  config.num_samples = 64  # Images in each sample grid (a square number makes a full grid).
  config.checkpoint_every_steps = 1000  # Also at the end of training and of each epoch.
  config.keep_checkpoints = 3  # Newest checkpoints kept.
  return config
