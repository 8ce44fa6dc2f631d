"""A real two-process run on this machine (gloo CPU collectives over 127.0.0.1), resumed, against one process."""

import re
import socket
import subprocess
import sys

import pytest

import conftest

pytestmark = pytest.mark.slow  # Real subprocesses.


@pytest.fixture(scope='module')
def idx_dir(tmp_path_factory):
  return conftest.write_idx_images(tmp_path_factory.mktemp('idx'), 64)


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _args(workdir, idx_dir, steps):
  return [sys.executable, 'main.py', '--config=configs/mnist.py', f'--workdir={workdir}',
          '--config.data.source=idx', f'--config.data.path={idx_dir}', '--config.data.split=test',
          '--config.batch_size=8', '--config.latent_dim=8', '--config.model.generator.features=(8,4)',
          '--config.model.discriminator.features=(4,8)', '--config.num_samples=4', '--config.log_every_steps=4',
          f'--config.num_train_steps={steps}', '--config.checkpoint_every_steps=8']


def _fingerprint(log):
  found = re.findall(r'parameter fingerprint ([0-9a-f]+)', log)
  assert found, log[-3000:]
  return found[-1]


def _two_processes(workdir, idx_dir, steps):
  port = _free_port()
  procs = [subprocess.Popen(
      _args(workdir, idx_dir, steps) + [f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                                        f'--process_id={i}'],
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=conftest.subprocess_env(1),
      cwd=conftest.ROOT) for i in range(2)]
  logs = [p.communicate(timeout=300)[1] for p in procs]
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return logs


def test_two_processes_train_resume_and_match_one_process_with_two_devices(tmp_path, idx_dir):
  workdir = tmp_path / 'two'
  first = _two_processes(workdir, idx_dir, 16)
  assert 'all devices: 2' in first[0]
  second = _two_processes(workdir, idx_dir, 24)
  assert all('Resuming at step 16' in log for log in second)
  # Both processes hold bit-identical parameters.
  assert _fingerprint(second[0]) == _fingerprint(second[1])
  # Only process 0 writes images and event files.
  assert 'Wrote samples' in second[0] and 'Wrote samples' not in second[1]
  assert len(list(workdir.glob('events.out.tfevents.*'))) == 2  # One per run, both from process 0.
  assert (workdir / 'samples' / 'step_0000024.png').exists()

  single = subprocess.run(_args(tmp_path / 'one', idx_dir, 24), capture_output=True, text=True,
                          env=conftest.subprocess_env(2), cwd=conftest.ROOT, timeout=300)
  assert single.returncode == 0, single.stderr[-3000:]
  # Same global data order and noise, same collectives: the same parameters, bit for bit.
  assert _fingerprint(single.stderr) == _fingerprint(second[0])
