"""The TensorFlow DCGAN for MNIST (28x28x1): the defaults, named for the command line, with PyTorch's initial weights.

`weight_init='pytorch'` (kernels and biases uniform in +-1/sqrt(fan_in)) instead of flax's lecun_normal: measured with
`benchmarks/quality.py` (5 epochs on the bundled digits, three seeds, docs/evaluation.md), it takes our FID from
behind the PyTorch reference's to ahead of it; the update rule itself is PyTorch's step for step
(tests/test_torch_step_parity.py). Fashion-MNIST, the RpGAN and the conditional MNIST configs derive from this one.
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  config.model.generator.weight_init = 'pytorch'
  config.model.discriminator.weight_init = 'pytorch'
  return config
