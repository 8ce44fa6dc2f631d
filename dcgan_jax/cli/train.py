"""The training command: `python main.py --config=configs/mnist.py --workdir=DIR [--config.FIELD=VALUE ...]` (also
installed as `dcgan-train`).

A thin shell over `dcgan_jax.trainer.loop.train_and_evaluate`: flags, device set-up, and one clear line for errors the
user can fix. Importing this module defines its flags on absl's global `FLAGS`; `parse_flags` and `train` run in
process (the tests call them), `main` adds the exit on error, `run` is the console entry point.
"""

import importlib.util
import os
import sys
from typing import Optional

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from dcgan_jax.trainer import checkpointing
from dcgan_jax import errors
from dcgan_jax.trainer import loop

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, samples and TensorBoard event files.')
config_flags.DEFINE_config_file('config', None, 'Training config file (configs/*.py).', lock_config=True)
flags.DEFINE_string('coordinator_address', None,
                    'Multi-process runs: HOST:PORT of process 0, as jax.distributed.initialize names it.')
flags.DEFINE_integer('num_processes', None, 'Multi-process runs: the number of processes.')
flags.DEFINE_integer('process_id', None, 'Multi-process runs: this process\'s index, 0 to num_processes - 1.')
flags.DEFINE_bool('allow_config_change', False,
                  'Resume although the config changes fields that break exact resume (batch size, seed, loss, '
                  'schedule, data); the change is logged and recorded in config.json.')
flags.mark_flags_as_required(['config', 'workdir'])


def _initialize_distributed() -> None:
  """Joins a multi-process run: from the flags, or detected by JAX on TPU pods and SLURM; else single process."""
  given = [FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id]
  if any(v is not None for v in given):
    if any(v is None for v in given):
      raise app.UsageError('--coordinator_address, --num_processes and --process_id go together')
  elif not (int(os.environ.get('SLURM_NTASKS', '1')) > 1 or os.environ.get('TPU_WORKER_HOSTNAMES', '').count(',')):
    return
  # CPU devices of different processes talk through gloo (without it cross-process collectives fail); the
  # setting does not affect GPU or TPU devices.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                             process_id=FLAGS.process_id)


def train() -> None:
  """Trains as the parsed flags say (`parse_flags` first). Raises `errors.UserError` for anything the user can fix."""
  _initialize_distributed()
  # tf.data/TFDS only read data here: keep TensorFlow off any accelerator so it does not compete with JAX.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.experimental.set_visible_devices([], 'GPU')
  logging.info('JAX process %d/%d, local devices: %s, all devices: %d', jax.process_index(), jax.process_count(),
               jax.local_devices(), jax.device_count())
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)


def main(argv) -> None:
  """`app.run`'s main: `train`, with a user error as one line and exit status 1."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  logging.get_absl_handler().addFilter(checkpointing.quiet_orbax_logs)
  try:
    train()
  except errors.UserError as e:
    exit_now(f'Error: {e}')


def exit_now(message: str) -> None:
  """Prints `message` and ends the process with status 1 at once.

  Not `sys.exit`: after a failed checkpoint write, orbax's background threads wait forever for each other, and the
  interpreter's shutdown would wait for them. Writes still in flight were finished before the error got here
  (`Checkpointer.finishing_writes`). The message is one write to file descriptor 2, on a line of its own: after a
  failed checkpoint write tensorstore's threads may be printing tracebacks ("Event loop is closed") to the same
  stream, a line's indentation at a time, at that very moment.
  """
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os.write(2, ('\n' + message + '\n').encode())
  os._exit(1)  # pylint: disable=protected-access


def _config_argument(argv) -> Optional[str]:
  """The value of --config in `argv` (the last one given), or None."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith(('--config=', '-config=')):
      value = arg.split('=', 1)[1]
    elif arg in ('--config', '-config') and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def check_config_file(argument: str) -> Optional[str]:
  """What is wrong with `--config=argument` (`FILE.py` or `FILE.py:ARG`) as one line, or None if it loads.

  Checks what ml_collections would report as a traceback: a missing file, a directory, a file that is not Python,
  one that does not run, one without `get_config`, and a `get_config` that returns no ConfigDict. (An exception
  raised by `get_config` itself is left to the flag parser, which reports it with the file's own message.)
  """
  path, _, config_arg = argument.partition(':')
  fix = 'pass a config file such as configs/mnist.py'
  if not path:
    return f'--config is empty; {fix}'
  if not os.path.exists(path):
    return f'--config={argument}: {path} does not exist; {fix}'
  if os.path.isdir(path):
    return f'--config={argument}: {path} is a directory; {fix}'
  if not path.endswith('.py'):
    return f'--config={argument}: {path} is not a Python config file (*.py defining get_config()); {fix}'
  try:
    spec = importlib.util.spec_from_file_location('dcgan_jax_config_check', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except  (any error in the file: report it, not a traceback)
    return f'--config={argument}: {path} does not run ({type(e).__name__}: {e}); fix it or {fix}'
  get_config = getattr(module, 'get_config', None)
  if not callable(get_config):
    return f'--config={argument}: {path} defines no get_config() function; {fix}'
  try:
    config = get_config(config_arg) if config_arg else get_config()
  except Exception:  # pylint: disable=broad-except
    return None
  if not isinstance(config, ml_collections.ConfigDict):
    return (f'--config={argument}: get_config() in {path} returned {type(config).__name__}, not an '
            f'ml_collections.ConfigDict; return one (as configs/default.py does) or {fix}')
  return None


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with config-override mistakes (a misspelled field, a value of the wrong type) and bad
  config files reported in one line (`SystemExit('Error: ...')`) instead of a traceback from inside ml_collections.
  Parses afresh each call (earlier values are forgotten), so it can run more than once in a process."""
  FLAGS.unparse_flags()
  for name in [name for name in FLAGS if name.startswith('config.')]:
    delattr(FLAGS, name)  # An earlier parse's override flags; this parse defines its own.
  argument = _config_argument(argv)
  problem = check_config_file(argument) if argument is not None else None
  if problem:
    sys.exit(f'Error: {problem}')
  # ml_collections defines the `--config.FIELD` override flags from `sys.argv` while it parses `--config`: the
  # same list as `argv` when run as a program, set here for calls in process.
  saved_argv, sys.argv = sys.argv, list(argv)
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = str(e)
    if 'Traceback (most recent call last)' in message:
      # A config file's get_config raised: its first and last lines say which file and why.
      lines = [line.strip() for line in message.splitlines() if line.strip()]
      message = f'{lines[0]} {lines[-1]}'
    sys.exit(f'Error: {message}. Pass --help to list the flags.')
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    message = str(e.args[0] if e.args else e).replace('\\n', '\n').replace("\\'", "'")
    # ml_collections says e.g. "'lossy'\nDid you mean "loss" instead of "lossy"?" (quoted, escaped).
    lines = [line.strip().strip('\'"') for line in message.strip('\'"').splitlines() if line.strip()] or ['?']
    message = f'no field {lines[0]!r}' + ''.join(f'; {line}' for line in lines[1:])
    network = next((n for n in ('generator', 'discriminator')
                    if any(a.startswith(f'--config.model.{n}.{lines[0]}=') for a in argv)), None)
    if network:
      message += (f' in this config\'s {network} family (a network\'s fields are its family\'s module fields; to '
                  'change family, start from a config of that family)')
    sys.exit(f'Error: bad --config override: {message}. Every field is listed in docs/configuration.md')
  finally:
    sys.argv = saved_argv


def run() -> None:
  """The console entry point (`python main.py`, `dcgan-train`)."""
  app.run(main, flags_parser=parse_flags)
