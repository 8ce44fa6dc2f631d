"""The TensorFlow DCGAN for MNIST (28x28x1): the defaults, named for the command line, with initial weights drawn
as PyTorch draws them, except the generator's output layer (flax's).

`model.*.weight_init='pytorch'` (kernels uniform in +-1/sqrt(fan_in), fan_in as PyTorch counts it) with
`model.generator.output_weight_init='flax'`: at 5 epochs on the 10,000 bundled digits FID 197.7-224.8 over seeds
0-4, 10/10 classes on every seed, against 241.1-279.2 for the PyTorch reference of the same networks (which
collapsed to 3 classes on seed 3) and 273.9-302.1 with flax's initialization everywhere. PyTorch's draw of the output
layer (6.5x flax's: PyTorch counts a transposed convolution's fan-in as out_channels x k x k = 25) saturates the
tanh, and is what made PyTorch's initialization collapse on seed 0 here and the reference on seed 3.
`benchmarks/quality.py`, docs/evaluation.md ("Quality against the PyTorch reference").
"""

from dcgan_jax.configs import default


def get_config():
  config = default.get_config()
  config.data.name = 'mnist'
  config.model.generator.weight_init = 'pytorch'
  config.model.generator.output_weight_init = 'flax'
  config.model.discriminator.weight_init = 'pytorch'
  return config
