"""The Rock-Paper-Scissors GAN made class-conditional: 3 classes (TFDS labels 0 rock, 1 paper, 2 scissors; a folder
source takes its sorted subdirectory names). Networks as in `rock_paper_scissors.py`, plus the 3 x 100 label
embedding concatenated to z and the projection discriminator over the flattened 19x19x128 features.
"""

from dcgan_jax.configs import rock_paper_scissors


def get_config():
  config = rock_paper_scissors.get_config()
  config.num_classes = 3
  config.num_samples = 12  # A per-class grid: 3 rows of 4.
  return config
