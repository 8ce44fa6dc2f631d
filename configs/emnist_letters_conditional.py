"""The EMNIST-letters GAN made class-conditional: one class per letter. EMNIST's letter labels run 1..26 (a..z),
so num_classes is 27 and class 0 is never trained (sample grids and evaluation use the classes the data holds).

The adaptive schedule's checks are not class-conditional, so this variant alternates one D and one G update per
step. Networks as in `emnist_letters.py`, plus the label embedding (27 x 100; the Dense projection reads z and the
embedding) and the projection discriminator (27 vectors over the flattened 4x4x512 features).
"""

from dcgan_jax.configs import emnist_letters


def get_config():
  config = emnist_letters.get_config()
  config.num_classes = 27
  config.schedule = 'alternating'
  return config
