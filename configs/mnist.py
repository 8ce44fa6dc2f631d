"""The TensorFlow DCGAN for MNIST (28x28x1): the defaults, named for the command line, and the discriminator's
initial weights drawn as PyTorch draws them.

`model.discriminator.weight_init='pytorch'` (kernels uniform in +-1/sqrt(fan_in), sqrt(3) smaller than flax's
lecun_normal; the generator keeps flax's): at 5 epochs on the 10,000 bundled digits FID 266.9 on average over seeds
0-4 against 285.5 with flax's in both networks, better on every seed, 10/10 classes on every seed. PyTorch's
initialization in both networks (the PyTorch reference's) collapsed to 3 classes on seed 0, as the reference did on
seed 3; in the generator alone it was worse (312.6 on seed 0). `benchmarks/quality.py`, docs/evaluation.md ("Quality
against the PyTorch reference").
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  config.model.discriminator.weight_init = 'pytorch'
  return config
