"""What the trainer watches besides the losses: sample quality, the best checkpoint, collapse, and the summary
pictures (GIF of the sample grids, plot of the curves).

Sample quality comes from the MNIST-style classifier (`evaluation.py`, labelled 28x28 data) and, when
`config.eval_inception_weights` is set, from pytorch-fid's Inception (`eval/scores.py`, any data). The best
checkpoint is chosen by the classifier's FID when there is a classifier, else by Inception FID.

`Monitor` is driven by the loop: `record(step, means)` at every progress line, `evaluate(step, state)` every
`config.eval_every_steps` and at the end, `finish()` at the end. Its history (`history.json`) and best score
(`best.json`) live in the workdir, so they survive a resume.
"""

import glob
import json
import os
from typing import Any, Callable, Optional

from absl import logging
import jax
import ml_collections
import numpy as np
from orbax.checkpoint import multihost as ocp_multihost

from dcgan_jax.trainer import besteffort
from dcgan_jax.trainer import checkpointing
from dcgan_jax import errors
from dcgan_jax.eval import evaluation
from dcgan_jax import models
from dcgan_jax import train
from dcgan_jax import train_state
from dcgan_jax import visualize
from dcgan_jax.eval import scores as inception_scores

# Metrics of the training step that go into the curves.
_CURVES = ('d_loss', 'g_loss', 'd_real', 'd_fake')


def _read_json(path: str, default: Any) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return default


def _write_json(path: str, value: Any) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f)
  os.replace(tmp, path)  # Atomic: a crash leaves the old file or the new one, never half of one.


def write_summary(workdir: str) -> list[str]:
  """Writes `progress.gif` (the sample grids over training) and `curves.png` (losses, D(x), D(G(z)), FID over
  steps) into `workdir` from what a run left there; returns the paths written. Also the on-demand entry point:
  `python -m dcgan_jax.cli.monitor WORKDIR`."""
  written = []
  grids = sorted(glob.glob(os.path.join(workdir, 'samples', 'step_*.png')))
  if grids:
    path = os.path.join(workdir, 'progress.gif')
    visualize.save_gif(grids, path, duration_ms=300)
    written.append(path)
  history = _read_json(os.path.join(workdir, 'history.json'), {})
  history = {k: v for k, v in history.items() if isinstance(v, list)}  # Curves; not e.g. inception_protocol.
  if any(history.values()):
    path = os.path.join(workdir, 'curves.png')
    visualize.plot_history({k: [tuple(p) for p in v] for k, v in history.items()}, path,
                           title=os.path.basename(os.path.abspath(workdir)))
    written.append(path)
  return written


class Monitor:
  """Evaluation, best checkpoint, collapse alarm and summaries for one run (see the module docstring).

  For a class-conditional run, `classes` (int [K'], the classes present in the data) are asked of the generator in
  turn, and each evaluation also reports `class_accuracy` (history.json and TensorBoard's `eval/class_accuracy`).
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, images: np.ndarray,
               sample_fn: Callable[[train_state.TrainState, jax.Array], jax.Array],
               to_global: Callable[[np.ndarray], jax.Array], writer: Any, classes: Optional[np.ndarray] = None):
    self._config = config
    self._workdir = workdir
    self._is_main = jax.process_index() == 0
    self._sample_fn = sample_fn
    self._writer = writer
    self._history_path = os.path.join(workdir, 'history.json')
    self._best_path = os.path.join(workdir, 'best.json')
    self.history = _read_json(self._history_path, {})
    self.best = _read_json(self._best_path, None)  # {'step': int, 'fid': float} or None.
    self._low_fake_evals = 0
    self._last_means = {}
    self._best_coverage = 0
    self._evaluator = None
    self._inception = None
    self._best_checkpointer = None
    self._enabled = False
    if config.eval_every_steps < 0:
      return
    try:
      if self._is_main:
        self._evaluator = evaluation.build_evaluator(config, images, config.eval_cache_dir)
    except errors.DataError as e:
      logging.warning('Classifier-based sample-quality evaluation is off: %s', e)
    if self._is_main and config.get('eval_inception_weights'):
      # Asked for explicitly: a bad weights file stops the run (errors.DataError) instead of a warning.
      self._inception = inception_scores.InceptionEvaluator(
          os.path.expanduser(config.eval_inception_weights), images, models.data_range(config),
          config.eval_cache_dir, max_real=config.eval_inception_num_real, seed=config.seed)
      self.history['inception_protocol'] = self._inception.protocol(config.eval_num_samples)
    self._enabled = _all_agree(self._evaluator is not None or self._inception is not None)
    if self._enabled:
      z = train.sample_noise(jax.random.fold_in(jax.random.key(config.seed), 2),
                             (config.eval_num_samples, config.latent_dim), config.noise)
      self._z = to_global(np.asarray(z))
      # Class-conditional runs (`classes`: those the data holds) ask for each class in turn and score
      # class_accuracy.
      self._labels = None if classes is None else np.resize(np.asarray(classes, np.int32), config.eval_num_samples)
      self._label_args = () if classes is None else (to_global(self._labels),)
      self._best_checkpointer = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints_best'), 1)

  @property
  def enabled(self) -> bool:
    """Whether samples are scored (`eval_every_steps` >= 0, and a labelled 28x28 dataset or Inception weights)."""
    return self._enabled

  def record(self, step: int, means: dict[str, float]) -> None:
    """Adds a progress line's means to the curves."""
    for key in _CURVES:
      if key in means:
        self.history.setdefault(key, []).append((step, means[key]))
    self._last_means = means
    if self._is_main:
      besteffort.call(self._history_path, _write_json, self._history_path, self.history)

  def evaluate(self, step: int, state: train_state.TrainState) -> Optional[dict[str, float]]:
    """Scores samples of `state` (every process calls this; process 0 computes), keeps the best checkpoint by FID,
    and raises the collapse alarm. Returns the scores on process 0."""
    if not self._enabled:
      return None
    samples = self._sample_fn(state, self._z, *self._label_args)
    scores = None
    fid = np.inf
    if self._is_main:
      scores = self._scores(np.asarray(samples.addressable_data(0)))
      fid = scores[self._best_key] if np.isfinite(scores[self._best_key]) else np.inf
    fid = float(_from_main(fid))
    is_best = np.isfinite(fid) and (self.best is None or fid < self.best['fid'])
    if is_best:
      self._best_checkpointer.save(state)
      self._best_checkpointer.wait()
      self.best = {'step': step, 'fid': fid, 'metric': self._best_key}
    if not self._is_main:
      return None
    if is_best:
      besteffort.call(self._best_path, _write_json, self._best_path, self.best)
    for key in ('fid', 'class_accuracy', 'inception_fid', 'inception_kid'):
      if key in scores:
        self.history.setdefault(key, []).append((step, scores[key]))
    alarms = self._alarms(scores)
    scalars = {f'eval/{k}': v for k, v in scores.items()}
    scalars['eval/collapse_alarm'] = float(bool(alarms))
    besteffort.call('evaluation scalars', self._writer.write_scalars, step, scalars)
    logging.info('eval step %d: %s%s', step, self._describe(scores),
                 ' (best so far; saved to checkpoints_best/)' if is_best else
                 f' (best: {self._best_key} {self.best["fid"]:.2f} at step {self.best["step"]})')
    for alarm in alarms:
      logging.warning('Collapse alarm at step %d: %s', step, alarm)
    besteffort.call(self._history_path, _write_json, self._history_path, self.history)
    return scores

  @property
  def _best_key(self) -> str:
    """The score that picks the best checkpoint: the classifier's FID when there is one, else Inception FID."""
    return 'fid' if self._evaluator is not None else 'inception_fid'

  def _scores(self, samples: np.ndarray) -> dict[str, float]:
    scores = self._evaluator.evaluate(samples, self._labels) if self._evaluator is not None else {}
    if self._inception is not None:
      scores.update(self._inception.evaluate(samples))
    return scores

  def _describe(self, scores: dict[str, float]) -> str:
    parts = []
    if 'fid' in scores:
      parts.append(f'FID {scores["fid"]:.2f}, coverage {int(scores["coverage"])}/{self._evaluator.num_classes}, '
                   f'KL {scores["kl"]:.3f}, precision {scores["precision"]:.3f}, recall {scores["recall"]:.3f}'
                   + (f', class accuracy {scores["class_accuracy"]:.3f} (worst class '
                      f'{scores["class_accuracy_min"]:.3f})' if 'class_accuracy' in scores else ''))
    if 'inception_fid' in scores:
      parts.append(f'Inception FID {scores["inception_fid"]:.2f}, KID {scores["inception_kid"]:.5f} ± '
                   f'{scores["inception_kid_stderr"]:.5f}')
    return '; '.join(parts)

  def _alarms(self, scores: dict[str, float]) -> list[str]:
    alarms = []
    if 'coverage' in scores:  # Only with a classifier.
      coverage = int(scores['coverage'])
      self._best_coverage = max(self._best_coverage, coverage)
      if self._best_coverage - coverage >= 3:
        alarms.append(f'mode coverage fell to {coverage} classes from {self._best_coverage}')
    d_fake = self._last_means.get('d_fake')
    self._low_fake_evals = self._low_fake_evals + 1 if d_fake is not None and d_fake < 0.05 else 0
    if self._low_fake_evals >= self._config.collapse_patience:
      alarms.append(f'D(G(z)) has stayed under 0.05 for {self._low_fake_evals} evaluations (now {d_fake:.3f}): '
                    'the discriminator wins outright')
    return alarms

  def finish(self) -> None:
    """Writes the summary pictures (process 0) and says which checkpoint is best."""
    if self._best_checkpointer is not None:
      self._best_checkpointer.close()
    if not self._is_main:
      return
    try:
      for path in write_summary(self._workdir):
        logging.info('Wrote %s', path)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('Could not write the summary pictures (%s: %s).', type(e).__name__, e)
    if self.best:
      logging.info('Best checkpoint: step %d (FID %.2f) in %s', self.best['step'], self.best['fid'],
                   os.path.join(self._workdir, 'checkpoints_best'))


_BARRIER_TIMEOUT_MS = 2 * 3600 * 1000
_barriers = iter(range(1 << 62))


def _wait_for_all_processes() -> None:
  """Waits at a coordination-service barrier (a generous timeout) until every process arrives.

  Process 0 alone trains or loads the feature classifier and scores the samples, which can take minutes; the
  others must not meet it in a device collective meanwhile, whose (gloo) set-up times out after 30 s.
  """
  if jax.process_count() == 1:
    return
  # orbax's public wrapper of JAX's coordination-service barrier (not a device collective).
  barrier = ocp_multihost.get_barrier_sync_fn()
  barrier(key=f'dcgan_jax_monitor_{next(_barriers)}', timeout_ms=_BARRIER_TIMEOUT_MS)


def _from_main(value: float) -> float:
  """Process 0's `value` on every process (the decisions that follow need every process to agree)."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  _wait_for_all_processes()
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def _all_agree(flag: bool) -> bool:
  return bool(_from_main(float(flag)))
