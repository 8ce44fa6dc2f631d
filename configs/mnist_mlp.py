"""The MLP GAN of `fashion_mnist_mlp.py` on MNIST."""

from dcgan_jax.configs import fashion_mnist_mlp


def get_config():
  config = fashion_mnist_mlp.get_config()
  config.data.name = 'mnist'
  return config
