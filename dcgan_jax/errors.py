"""Errors that reach the user as one clear line instead of a traceback.

Anything a user can fix (a config value, a missing dataset, a corrupt file, a checkpoint from another model) raises
a subclass of `UserError`; `main.py` prints its message and exits with status 1. The argparse commands
(`dcgan_jax.inception`, `dcgan_jax.fid`) print it and exit with `USAGE_EXIT_CODE`, as for a bad flag.
"""

import argparse
import sys

USAGE_EXIT_CODE = 2


class UserError(Exception):
  """A problem the user can fix; the message names the thing and the fix."""


class ConfigError(UserError, ValueError):
  """A config field has a bad type, range or name."""


class DataError(UserError, ValueError):
  """A dataset is missing, empty, corrupt or unreachable."""


class CheckpointError(UserError):
  """A checkpoint cannot be restored into the current config."""


class CheckpointWriteError(CheckpointError):
  """Writing a checkpoint failed (disk full, permissions, ...); the checkpoints already written are intact."""


class WorkdirError(UserError):
  """The workdir cannot be created or written."""


class WorkdirBusyError(WorkdirError):
  """Another live run holds the workdir's lock."""


class OutputError(UserError):
  """An output file cannot be written."""


class TrainingDivergedError(UserError):
  """A loss became NaN or Inf; the last good checkpoint is kept."""


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors (unknown or missing flags, bad values) are one line, `Error: ... Pass --help to
  list the flags.`, and exit with status `USAGE_EXIT_CODE` (2)."""

  def error(self, message: str):
    sys.stderr.write(f'Error: {message}. Pass --help to list the flags.\n')
    sys.exit(USAGE_EXIT_CODE)
