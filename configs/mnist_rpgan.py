"""The MNIST DCGAN trained with the relativistic pairing GAN loss (RpGAN, Jolicoeur-Martineau 2018).

D's loss is softplus(D(fake) - D(real)) over pairs, G's the same with the roles swapped: G's loss sees the real
logits, which `GANLoss.g(real_logits, fake_logits)` gives it. `python main.py --config=configs/mnist_rpgan.py`.
"""

from dcgan_jax.configs import mnist


def get_config():
  config = mnist.get_config()
  config.loss = 'rpgan'
  # flax's initialization, as when this config was measured; mnist.py's PyTorch-drawn networks were measured
  # with the non-saturating loss only.
  config.model.generator.weight_init = config.model.discriminator.weight_init = 'flax'
  config.model.generator.output_weight_init = ''
  return config
