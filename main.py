"""Command line entry point: `python main.py --config=configs/mnist.py --workdir=DIR [--config.FIELD=VALUE ...]`.

A thin shell over `dcgan_jax.train.train_and_evaluate`: flags, device set-up, and one clear line for errors the
user can fix.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from dcgan_jax import errors
from dcgan_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, samples and TensorBoard event files.')
config_flags.DEFINE_config_file('config', None, 'Training config file (configs/*.py).', lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def _quiet_orbax(record) -> bool:
  # orbax logs a dozen INFO lines per checkpoint; keep its warnings, drop its chatter from the progress log.
  return record.levelno >= logging.WARNING or 'orbax' not in record.pathname


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(_quiet_orbax)
  # tf.data/TFDS only read data here: keep TensorFlow off any accelerator so it does not compete with JAX.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.experimental.set_visible_devices([], 'GPU')
  logging.info('JAX process %d/%d, local devices: %s', jax.process_index(), jax.process_count(),
               jax.local_devices())
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except errors.UserError as e:
    sys.exit(f'Error: {e}')


if __name__ == '__main__':
  app.run(main)
