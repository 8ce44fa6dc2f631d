"""dcgan_jax: GAN training (DCGAN first) in JAX/Flax with a pure, jit-compiled train step."""

__version__ = "0.1.0"
