"""Samples from a trained run (also installed as `dcgan-sample`); what it writes is `dcgan_jax.sample.run`'s:

  python -m dcgan_jax.cli.sample --workdir=W [--checkpoint=best|latest|STEP] --num=64 --out=grid.png \
      [--interpolate] [--use_running_average] [--seed=0] [--export=generator.jax] [--generator=ema|raw]
      [--label=K|NAME]
"""

import sys

from absl import app
from absl import flags
from absl import logging

from dcgan_jax import errors
from dcgan_jax import sample
from dcgan_jax.trainer import checkpointing

FLAGS = flags.FLAGS


def _no_read_only_notes(record) -> bool:
  """Drops orbax's three warnings that the (deliberately) read-only manager is read-only."""
  message = record.getMessage()
  return not ('read_only=True' in message or 'directory is read only' in message)


def _define_flags() -> None:
  # Only when run as a program: importing this module defines no global flags.
  flags.DEFINE_string('workdir', None, 'The training run directory (holds config.json and checkpoints/).')
  flags.DEFINE_string('checkpoint', 'latest', "'latest', 'best' (checkpoints_best/) or a step number.")
  flags.DEFINE_integer('num', 64, 'Number of samples (with --interpolate: rows x --steps).')
  flags.DEFINE_string('out', 'samples.png', '.png for a grid, .npy for the raw float32 samples [N, H, W, C].')
  flags.DEFINE_bool('interpolate', False, 'Rows of linear interpolations between pairs of noise vectors.')
  flags.DEFINE_integer('steps', 8, 'Points per interpolation row (with --interpolate).')
  flags.DEFINE_bool('use_running_average', None,
                    "BatchNorm with running averages (true) or the batch's statistics (false); default: the run's "
                    'config.model.sample_use_batch_stats.')
  flags.DEFINE_integer('seed', 0, 'Seed of the noise; the same seed gives the same samples.')
  flags.DEFINE_enum('generator', None, ['ema', 'raw'],
                    "The generator's weights: their moving average (ema; the run needs config.ema_decay > 0) or the "
                    'trained ones (raw); default: ema when the run has it, else raw.')
  flags.DEFINE_string('export', None, 'Also write the generator as a serialized jax.export.Exported (z [N, latent] '
                      '-> images, parameters baked in) to this path.')
  flags.DEFINE_string('label', None, 'Class-conditional runs: the class to draw, an index or a folder class name; '
                      'default: a grid with one row per class.')
  flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(checkpointing.quiet_orbax_logs)
  logging.get_absl_handler().addFilter(_no_read_only_notes)
  try:
    images = sample.run(FLAGS.workdir, FLAGS.out, FLAGS.checkpoint, FLAGS.num, FLAGS.seed, FLAGS.interpolate,
                 FLAGS.use_running_average, FLAGS.steps, FLAGS.export, FLAGS.generator, FLAGS.label)
  except errors.UserError as e:
    sys.exit(f'Error: {e}')
  print(f'wrote {FLAGS.out}: {images.shape[0]} samples')


def run() -> None:
  """The console entry point (`python -m dcgan_jax.cli.sample`, `dcgan-sample`)."""
  _define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
