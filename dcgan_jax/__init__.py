"""dcgan_jax: GAN training (DCGAN first) in JAX/Flax with a pure, jit-compiled train step.

The public API (docs/api.md):

  config = dcgan_jax.configs.mnist.get_config()
  state = dcgan_jax.create_train_state(config, jax.random.key(0), generator=..., g_optimizer=..., loss=...)
  state, metrics = jax.jit(dcgan_jax.train_step)(state, {'image': images})      # float32 [B, H, W, C]
  images = dcgan_jax.generate(state, z)                                            # z: float32 [N, latent_dim]
  population = dcgan_jax.create_population(config, seeds, **values)               # for jax.vmap(train_step)
  config, state = dcgan_jax.load(workdir)                                          # a run main.py wrote
  dcgan_jax.export_generator(state, 'generator.jax')                               # jax.export, params baked in
"""

from dcgan_jax.backend import cpu_workarounds
from dcgan_jax.export import export_generator
from dcgan_jax.trainer.loop import train_and_evaluate
from dcgan_jax.losses import GANLoss
from dcgan_jax.population import create_population
from dcgan_jax.population import member
from dcgan_jax.sample import load
from dcgan_jax.steps import all_finite
from dcgan_jax.train_state import create_train_state
from dcgan_jax.train import d_step
from dcgan_jax.train import discriminate
from dcgan_jax.train import g_step
from dcgan_jax.train import generate
from dcgan_jax.train import sample_noise
from dcgan_jax.train import train_step
from dcgan_jax.train_state import TrainState

__version__ = "0.1.0"
__all__ = ['GANLoss', 'TrainState', 'all_finite', 'cpu_workarounds', 'create_population', 'create_train_state', 'd_step',
           'discriminate', 'export_generator', 'g_step', 'generate', 'load', 'member', 'sample_noise',
           'train_and_evaluate', 'train_step']
