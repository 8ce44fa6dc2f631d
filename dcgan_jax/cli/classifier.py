"""Trains the feature classifier of a labelled 28x28 dataset and reports its held-out accuracy (also installed as
`dcgan-classifier`):

  python -m dcgan_jax.cli.classifier --data_source=idx --data_path=DIR --split=test --out=DIR

With `--out`, the parameters are written where the trainer's evaluation looks for them (`eval.cache_dir`).
"""

import sys
import time

from absl import app
from absl import flags
import ml_collections

from dcgan_jax import errors
from dcgan_jax.data import input_pipeline
from dcgan_jax.eval import classifier

FLAGS = flags.FLAGS


def _define_flags() -> None:
  # Defined only when run as a program, so importing this module adds no global flags that could collide.
  flags.DEFINE_enum('data_source', 'idx', ['idx', 'tfds', 'bundled'],
                    'Where the labelled images come from (bundled: the MNIST test digits shipped with dcgan_jax).')
  flags.DEFINE_string('data_path', '', 'Directory of IDX image and label files (--data_source=idx).')
  flags.DEFINE_string('data_name', 'mnist', 'TFDS dataset name (--data_source=tfds).')
  flags.DEFINE_string('data_dir', '', "TFDS data_dir ('' for TFDS's default).")
  flags.DEFINE_string('split', 'train', 'Split to train on.')
  flags.DEFINE_string('eval_split', '', 'Split to measure the accuracy on; empty: hold out --holdout of --split.')
  flags.DEFINE_float('holdout', 0.2, 'Share of --split held out when --eval_split is empty.')
  flags.DEFINE_integer('steps', 1500, 'Training steps.')
  flags.DEFINE_integer('batch_size', 128, 'Training batch size.')
  flags.DEFINE_integer('seed', 0, 'Seed of the split, initialization and batch order.')
  flags.DEFINE_string('out', '', 'Cache directory to write the parameters to (as load_or_train reads them).')


def _data_config(split: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({'source': FLAGS.data_source, 'path': FLAGS.data_path, 'name': FLAGS.data_name,
                                    'data_dir': FLAGS.data_dir, 'split': split})


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  try:
    config = _data_config(FLAGS.split)
    images, labels = input_pipeline.load_images(config), classifier.load_labels(config)
    eval_images = eval_labels = None
    if FLAGS.eval_split:
      eval_config = _data_config(FLAGS.eval_split)
      eval_images, eval_labels = input_pipeline.load_images(eval_config), classifier.load_labels(eval_config)
    start = time.time()
    variables, held_out, losses = classifier.train_classifier(
        images, labels, seed=FLAGS.seed, steps=FLAGS.steps, batch_size=FLAGS.batch_size, holdout=FLAGS.holdout,
        eval_images=eval_images, eval_labels=eval_labels)
    if FLAGS.eval_split:
      where = f'split {FLAGS.eval_split} ({len(eval_labels)} images)'
    else:
      where = f'{int(round(FLAGS.holdout * len(labels)))} held-out images of split {FLAGS.split}'
    print(f'held-out accuracy {held_out:.4f} on {where}; trained on split {FLAGS.split} in '
          f'{time.time() - start:.0f} s; epoch losses {", ".join(f"{x:.4f}" for x in losses)}')
    if FLAGS.out:
      path = classifier.cache_path(FLAGS.out, classifier.dataset_key(config))
      classifier.save(path, variables, held_out)
      print(f'wrote {path}')
  except errors.UserError as e:
    sys.exit(f'Error: {e}')


def run() -> None:
  """The console entry point (`python -m dcgan_jax.cli.classifier`, `dcgan-classifier`)."""
  _define_flags()
  app.run(main)


if __name__ == '__main__':
  run()
