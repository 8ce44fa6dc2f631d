"""Every config field, defined once with its meaning (the networks' fields on their modules in dcgan_jax/models).
Variants import `get_config()` and override what differs.

The defaults are the TensorFlow DCGAN for MNIST (28x28x1, data in [-1, 1]).
"""

import ml_collections

from dcgan_jax import models


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config; every user-visible option is a field here."""
  config = ml_collections.ConfigDict()

  config.seed = 0  # Seeds parameter init, noise, and the per-epoch data order.
  config.num_epochs = 20  # Passes over the training split.
  config.num_train_steps = -1  # If > 0, stop after this many steps instead of `num_epochs` epochs.
  config.batch_size = 128  # Global batch, split evenly over all devices.
  # Train steps fused into one compiled call; > 1 helps small models (compiles longer). The adaptive schedule runs
  # one step per call (the host reads whose turn it is).
  config.steps_per_call = 1
  config.latent_dim = 100  # Size of the noise vector z.
  config.noise = 'uniform'  # 'uniform' (in [-1, 1], as the original) or 'normal'.
  # Class-conditional GAN: 0 (unconditional) or the number of classes K. With K > 0 the data's labels (0..K-1) are
  # batched with the images, the generator embeds the label (concatenated to z) and the discriminator is a projection
  # discriminator; samples are drawn per class. Labels come from the IDX labels file, the TFDS 'label' feature, or a
  # folder's first-level subdirectories (sorted names). Not with schedule 'adaptive'.
  config.num_classes = 0
  # With num_classes > 0: weight of the auxiliary classification loss (AC-GAN's, over the projection
  # discriminator's class scores): D learns to classify the real batch, G to make fakes of the class asked for.
  # 0 = off.
  config.class_loss_weight = 0.0
  # GAN loss, computed from logits: 'non_saturating', 'minimax', 'lsgan', 'hinge', 'wgan_gp', or the relativistic
  # 'rpgan' (pairing) and 'ragan' (average) (see losses.py).
  config.loss = 'non_saturating'
  # One-sided label smoothing: D's real target is 1 - label_smoothing (non_saturating, minimax, lsgan; must be 0
  # for hinge and wgan_gp). 0 disables it.
  config.label_smoothing = 0.0
  config.gp_weight = 10.0  # wgan_gp: weight of the gradient penalty added to the critic's loss (the paper's 10).
  # Exponential moving average of G's weights, used for samples, evaluation and export when on: the decay (0 = off;
  # e.g. 0.999), warmed up as min(decay, (1 + t) / (10 + t)) at G update t. BatchNorm uses the raw G's statistics.
  config.ema_decay = 0.0
  # R1 / R2 gradient penalties (Mescheder et al. 2018): r1_weight / 2 * E||grad_x D(x)||^2 on real images (R1) and
  # r2_weight / 2 * the same on generated ones (R2), added to D's loss; 0 = off. StyleGAN2 uses R1 with gamma 10 on
  # FFHQ-size images; small images want less (e.g. 0.1 to 1).
  config.r1_weight = 0.0
  config.r2_weight = 0.0
  # Lazy regularization (StyleGAN2): R1/R2 on every r_every-th D update only, scaled by r_every. 1: every update.
  config.r_every = 16
  # DiffAugment (Zhao et al. 2020): '' (off) or a comma list of 'color', 'translation', 'cutout' (the paper's
  # 'color,translation,cutout'), applied in that order to real and generated images before D in every update.
  config.diffaugment = ''
  # Training schedule (see dcgan_jax/trainer/schedules.py): 'alternating' (each step: d_steps D updates, each on its own
  # real batch, then g_steps G updates), 'epoch_blocks' (each epoch: G for an epoch's worth of steps, then D over
  # the epoch's batches) or 'adaptive' (G until it fools D on g_target of a fresh batch, then D until its held-out
  # accuracy reaches d_target, each capped; one step per call).
  config.schedule = 'alternating'
  config.d_steps = 1  # alternating: D updates per step (WGAN-GP's n_critic: 5).
  config.g_steps = 1  # alternating: G updates per step.
  config.g_target = 0.2  # adaptive: G's turn ends when D calls at least this fraction of fresh fakes real.
  config.d_target = 0.5  # adaptive: D's turn ends when its accuracy on held-out reals + fresh fakes reaches this.
  config.g_max_steps = 100  # adaptive: most steps in one G turn.
  config.d_max_steps = 100  # adaptive: most steps in one D turn.
  # Computation dtype: 'float32', or 'bfloat16' (mixed precision for GPU/TPU: bfloat16 matmuls and convolutions,
  # float32 parameters, optimizer states, BatchNorm statistics and losses).
  config.dtype = 'float32'

  # Data.
  config.data = ml_collections.ConfigDict()
  # 'auto' (TFDS when the dataset is prepared or downloadable, else the bundled copy if there is one: MNIST's 10,000
  # test digits ship with the package), 'tfds' (insist on TFDS), 'bundled' (the shipped MNIST test digits; split
  # ignored), 'idx' (a directory of MNIST-format IDX files) or 'folder' (every png/jpg/jpeg/webp/bmp under `path`,
  # recursively, converted to `channels`, resized on the short side and center-cropped to `image_size`).
  config.data.source = 'auto'
  config.data.name = 'mnist'  # TFDS dataset name (source=tfds).
  config.data.split = 'train'  # 'train' or 'test' (idx: test reads the t10k files); any TFDS split for tfds.
  config.data.path = ''  # Directory of IDX files (source=idx) or of images (source=folder).
  config.data.data_dir = ''  # TFDS data_dir; '' means TFDS's default (~/tensorflow_datasets).
  config.data.image_size = 28  # Height and width of the images.
  config.data.channels = 1  # 1 (grayscale) or 3 (RGB).
  # Swap each image's height and width axes after loading (any source). EMNIST's IDX files and TFDS's emnist store
  # the characters transposed; True shows them upright.
  config.data.transpose = False
  # Datasets up to this size (uint8 bytes) are put on the device once and batched there; larger ones are batched on
  # the host and sent each step. 0 keeps every dataset on the host.
  config.data.max_device_bytes = 1 << 30
  # Folder source: when the decoded images would exceed this many bytes, they are streamed (each batch decoded from
  # its files when used) instead of held in memory. 0 means half of this machine's memory.
  config.data.max_host_bytes = 0

  # Model: one section per network, `family` and exactly that family's fields, named as the module's attributes
  # and built as `Module(**fields)` (dcgan_jax/models; every family and field is in docs/configuration.md, each
  # field's meaning is also commented on its module). `models.network_config` fills in the module's defaults, so a
  # new module field is a config field at once. The image size and channels (`data`), `dtype` and `latent_dim` are
  # not per network: the builder passes them. Here: the TensorFlow MNIST DCGAN, a 'dcgan' generator (z as 1x1 ->
  # transposed conv 'VALID' to start_size -> one stride-2 transposed conv per later entry of features -> stride-2
  # transposed conv to the channels -> tanh; start_size 0 derives it from data.image_size) and a 'conv'
  # discriminator (one stride-2 conv block per entry of features, then a 'VALID' conv to 1 logit).
  # The command line sets a section's fields but cannot switch its family (ml_collections refuses the other
  # family's fields): start from a config of that family (configs/emnist_letters.py: upsample generator;
  # configs/mnist_mlp.py: mlp generator and discriminator), or write a config file that sets the section, e.g.
  # `config.model.generator = models.network_config('generator', 'mlp', features=(256, 512))`.
  config.model = ml_collections.ConfigDict()
  config.model.generator = models.network_config('generator', 'dcgan', start_size=7, features=(256, 128),
                                                 kernel_size=5)
  config.model.discriminator = models.network_config('discriminator', 'conv', features=(128, 256), kernel_size=5)
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
  config.checkpoint_every_steps = 1000  # Checkpoint period in steps (0: none by steps); also at the end of training.
  # Checkpoint at the end of every N-th epoch (1: every epoch); 0: none at epoch ends.
  config.checkpoint_every_epochs = 1
  config.keep_checkpoints = 3  # Newest checkpoints kept.
  # Sample quality (FID, mode coverage, KL, precision/recall, pixel statistics) in a classifier's feature space,
  # for labelled 28x28x1 datasets (mnist, fashion_mnist, emnist, their IDX files); off for other data.
  # At most one epoch apart (a shorter epoch evaluates at each epoch end); also at step 0 and the end. 0: only at
  # step 0 and the end; -1: never.
  config.eval_every_steps = 1000
  config.eval_num_samples = 2000  # Generated images per evaluation (FID depends on it: keep it fixed to compare).
  config.eval_cache_dir = '~/.cache/dcgan_jax'  # Where the feature classifiers are cached, one per dataset.
  config.eval_classifier_steps = 1500  # Training steps of a dataset's feature classifier (once, then cached).
  # Paper-comparable Inception FID and KID at each evaluation, for any dataset (RGB or grayscale): the path of
  # pytorch-fid's pt_inception-2015-12-05-6726825d.pth (needs torch) or its .npz (`python -m dcgan_jax.inception
  # --convert`); '' : off. ~6 GFLOP per image: eval_num_samples images per evaluation, slow on CPU.
  config.eval_inception_weights = ''
  # Real images (training split, a fixed random subset when larger) of the Inception statistics, computed once and
  # cached in eval_cache_dir.
  config.eval_inception_num_real = 10000
  config.collapse_patience = 3  # Alarm when D(G(z)) < 0.05 for this many evaluations in a row.
  config.annotate_samples = False  # Also write each grid with D's score (sigmoid) under every image.
  # A NaN/Inf loss stops the run (False), or the step is skipped, counted in the `skipped` scalar, and training
  # goes on (True).
  config.skip_nonfinite = False
  # CPU backend only: the convolutions' library (forward and both gradients). 'xla' (XLA's own), 'onednn' (oneDNN's
  # through jax.ffi, compiled with g++ on first use into ~/.cache/dcgan_jax/ffi; an error if that fails: pip install
  # -r requirements-onednn.txt) or 'auto' (oneDNN's if it builds and self-checks, else XLA's with one log line).
  # GPU/TPU always use the stock convolutions. 'auto' by measurement: the DCGAN steps 1.5-1.7x faster on CPU
  # (docs/performance.md, "oneDNN convolutions").
  config.cpu_conv = 'auto'
  return config
