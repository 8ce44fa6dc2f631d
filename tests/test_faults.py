"""Never lose a run, part 2 (issue 16): hangs, races and poisoned checkpoints, each reproduced as it was found.

Process-level faults run `main.py` (or the sample CLI) as a subprocess with the small `mnist_fnn` config on a
64-image IDX fixture; every subprocess has a timeout, so a hang fails the test instead of blocking it.
"""

import contextlib
import os
import subprocess
import sys

import pytest

import conftest

STEPS = 30  # 64 images, batch 8: 8 steps per epoch.


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 64)


def _args(workdir, idx_dir, *extra):
  return [sys.executable, 'main.py', '--config=configs/mnist_fnn.py', f'--workdir={workdir}',
          '--config.data.source=idx', f'--config.data.path={idx_dir}', '--config.data.split=test',
          '--config.batch_size=8', '--config.latent_dim=8', '--config.model.g_features=(16,)',
          '--config.model.d_features=(16,)', '--config.num_samples=4', '--config.log_every_steps=5',
          '--config.eval_every_steps=-1', f'--config.num_train_steps={STEPS}', '--config.checkpoint_every_steps=10',
          *extra]


def _run(args, timeout=120):
  return subprocess.run(args, capture_output=True, text=True, env=conftest.subprocess_env(), cwd=conftest.ROOT,
                        timeout=timeout)


def _assert_one_line_error(proc, *fragments):
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  error_lines = [line for line in proc.stderr.splitlines() if line.startswith('Error: ')]
  assert len(error_lines) == 1, proc.stderr[-3000:]
  for fragment in fragments:
    assert fragment in error_lines[0], error_lines[0]
  return error_lines[0]


@contextlib.contextmanager
def _unwritable(directory):
  """`directory` refuses new entries while inside: immutable for root (which ignores permission bits), else 0o555."""
  directory.mkdir(parents=True, exist_ok=True)
  root = os.geteuid() == 0
  if root:
    subprocess.run(['chattr', '+i', str(directory)], check=True)
  else:
    directory.chmod(0o555)
  try:
    yield directory
  finally:
    if root:
      subprocess.run(['chattr', '-i', str(directory)], check=True)
    else:
      directory.chmod(0o755)


# 1. A checkpoint directory that refuses writes: one line and exit 1, promptly (it used to hang forever).


@pytest.mark.slow
def test_unwritable_checkpoint_directory_stops_promptly_with_one_line(tmp_path, idx_dir):
  with _unwritable(tmp_path / 'checkpoints'):
    proc = _run(_args(tmp_path, idx_dir), timeout=120)
  line = _assert_one_line_error(proc, f'{tmp_path}/checkpoints', 'writable', 'run the same command')
  assert 'Free disk space' not in line
