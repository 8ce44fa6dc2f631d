"""Paper-comparable FID and KID on Inception pool3 features (`eval/inception.py`), and the protocol that names how
the numbers were made.

Image sets come from a `.npy` array (uint8 [N, H, W, 3], [N, H, W, 1] or [N, H, W]), an image folder (every image
file under it, read at its own size as RGB the way pytorch-fid reads files; all of one size), or a training run's
workdir (samples of its best checkpoint, or its latest when it kept no best, quantized to uint8 as a PNG would be).

`InceptionEvaluator` scores a training run's samples the same way (`config.eval_inception_weights`), with the
real images' features computed once per dataset and cached.
"""

import hashlib
import math
import os
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from dcgan_jax import errors
from dcgan_jax.data import image_folder
from dcgan_jax.eval import metrics
from dcgan_jax import visualize
from dcgan_jax.eval import inception

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's default.
# Below this many images the 2048 x 2048 covariances are singular and FID is strongly biased upwards; papers use
# 10,000 or 50,000.
FEW_IMAGES = 2048
_SAMPLE_CHUNK = 500


def load_npy(path: str) -> np.ndarray:
  """uint8 images [N, H, W, C] or [N, H, W] from a `.npy` file (not pickled)."""
  try:
    images = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise errors.DataError(f'cannot read {path} as a .npy array ({type(e).__name__}: {e})') from None
  if images.dtype != np.uint8:
    raise errors.DataError(f'{path} holds {images.dtype} values; pass uint8 images in 0..255 (for float samples in '
                           '[-1, 1]: np.round((x + 1) * 127.5).astype(np.uint8))')
  return inception.as_rgb(images)


def load_folder(path: str) -> np.ndarray:
  """Every image file under `path` (sorted), as RGB uint8 [N, H, W, 3] at its own size (all of one size)."""
  files = image_folder.list_images(path)
  if not files:
    raise errors.DataError(f'{path} holds no image files ({", ".join(image_folder.EXTENSIONS)})')
  images = []
  for file in files:
    try:
      with Image.open(file) as img:
        images.append(np.asarray(img.convert('RGB'), np.uint8))
    except (OSError, ValueError, SyntaxError) as e:
      raise errors.DataError(f'cannot decode {file} ({type(e).__name__}: {e}); remove it or fix it') from None
    if images[-1].shape != images[0].shape:
      raise errors.DataError(f'{file} is {images[-1].shape[1]}x{images[-1].shape[0]} but {files[0]} is '
                             f'{images[0].shape[1]}x{images[0].shape[0]}; the images of a set must share one size')
  return np.stack(images)


def sample_run(workdir: str, num: int, seed: int = 0) -> tuple[np.ndarray, str]:
  """`num` samples of a training run as uint8 [num, H, W, C], and where they came from.

  The best checkpoint (`checkpoints_best/`) when the run kept one, else the latest; generated in chunks with the
  run's sampling mode and quantized as `visualize.to_uint8` (the pixels a saved PNG would hold).
  """
  from dcgan_jax import models  # pylint: disable=g-import-not-at-top  (the training stack only for workdirs)
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  config = sample.load_run_config(workdir)
  has_best = os.path.isdir(os.path.join(workdir, sample.BEST_CHECKPOINTS)) and any(
      name.isdigit() for name in os.listdir(os.path.join(workdir, sample.BEST_CHECKPOINTS)))
  checkpoint = 'best' if has_best else 'latest'
  state = sample.restore_state(workdir, config, checkpoint)
  chunks = []
  for i, start in enumerate(range(0, num, _SAMPLE_CHUNK)):
    # Chunk i has its own noise seed; a seed's samples differ from another's for the first million chunks.
    images, _ = sample.generate_samples(state, config, min(_SAMPLE_CHUNK, num - start), seed=seed + i * 1_000_003)
    chunks.append(visualize.to_uint8(images, models.data_range(config)))
  return inception.as_rgb(np.concatenate(chunks)), f'{checkpoint} checkpoint (step {int(state.step)})'


def source_kind(source: str) -> str:
  """'run', 'folder' or 'npy': what kind of image set `source` names, checked without reading it.

  Raises:
    errors.DataError: it is none of them.
  """
  if os.path.isdir(source):
    return 'run' if os.path.isfile(os.path.join(source, 'config.json')) else 'folder'
  if source.endswith('.npy') and os.path.isfile(source):
    return 'npy'
  raise errors.DataError(f'{source} is neither a .npy image array, an image folder nor a training run directory')


def load_images(source: str, num: Optional[int] = None, seed: int = 0) -> tuple[np.ndarray, str]:
  """An image set and its description: `source` is a `.npy`, an image folder or a run's workdir (needs `num`).

  Returns:
    `(uint8 [N, H, W, 3], description)`.
  """
  kind = source_kind(source)
  if kind == 'run':
    if not num:
      raise errors.ConfigError(f'{source} is a training run: say how many samples to draw from it (--num_fake)')
    images, origin = sample_run(source, num, seed)
    return images, f'{len(images)} samples of the run {source}, {origin}, seed {seed}'
  if kind == 'folder':
    images = load_folder(source)
    return images, f'{len(images)} images of the folder {source}'
  images = load_npy(source)
  return images, f'{len(images)} images of {source}'


def protocol(weights: inception.InceptionWeights, sets: Sequence[tuple[str, np.ndarray, str]]) -> list[str]:
  """Lines naming the feature network, the weights, the resize and each image set `(name, images, description)`."""
  lines = [f'feature network: pytorch-fid InceptionV3 (FID variant), pool3, {inception.FEATURE_DIM}-d, float32',
           f'weights: {weights.describe()}']
  for name, images, description in sets:
    _, height, width, _ = images.shape
    resize = ('none' if (height, width) == (inception.INPUT_SIZE,) * 2 else
              f'bilinear {width}x{height} -> {inception.INPUT_SIZE}x{inception.INPUT_SIZE} (align_corners=False, '
              'no antialiasing)')
    lines.append(f'{name}: {description}; resize {resize}; [0, 255] -> [-1, 1]')
    if len(images) < FEW_IMAGES:
      lines.append(f'{name}: only {len(images)} images (< {FEW_IMAGES}): FID is biased upwards; papers use 10k-50k')
  return lines


def fid_kid(real_features: Any, fake_features: Any, kid_subsets: int = KID_SUBSETS,
            kid_subset_size: int = KID_SUBSET_SIZE) -> tuple[float, metrics.KID, str]:
  """FID and KID between two feature sets [N, 2048] (N >= 2 each), and a line describing the KID estimator.

  KID draws from the fake set first (torch-fidelity's input1) with torch-fidelity's seed.
  """
  fid = metrics.fid(real_features, fake_features)
  kid = metrics.kid(fake_features, real_features, kid_subsets, kid_subset_size, KID_SEED)
  size = min(kid_subset_size, len(real_features), len(fake_features))
  line = (f'KID: unbiased MMD^2, kernel (x.y/{np.shape(real_features)[1]} + 1)^3, {kid_subsets} subsets of {size}, '
          f'seed {KID_SEED}; mean ± standard error (std {kid.std:.6f})')
  return fid, kid, line


def result_line(fid: float, kid: metrics.KID) -> str:
  """The last line the `fid` command prints: `FID <value> KID <mean> ± <standard error>`."""
  return f'FID {fid:.4f} KID {kid.mean:.6f} ± {kid.stderr:.6f}'


# The keys of `InceptionEvaluator.evaluate`'s result.
KEYS = ('inception_fid', 'inception_kid', 'inception_kid_stderr')


def cached_features(weights: inception.InceptionWeights, images: np.ndarray, cache_dir: str,
                    batch_size: int = inception.DEFAULT_BATCH_SIZE) -> np.ndarray:
  """`inception.extract_features(weights, images)`, read from `cache_dir` when computed before.

  The file is named by the sha256 of the images' bytes and shape and the weights' source sha256, so another
  dataset, subset or weights file never reuses it. A cache that cannot be written only costs a warning.
  """
  digest = hashlib.sha256(str(images.shape).encode() + np.ascontiguousarray(images).tobytes()).hexdigest()
  path = os.path.join(os.path.expanduser(cache_dir),
                      f'inception_real_{digest[:16]}_{weights.source_sha256[:16]}.npy')
  if os.path.isfile(path):
    try:
      cached = np.load(path, allow_pickle=False)
      if cached.ndim == 2 and cached.shape[0] == len(images):
        return cached
    except (OSError, ValueError):
      pass  # Damaged: computed again and rewritten.
  features = inception.extract_features(weights, images, batch_size)
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.save(path + '.tmp.npy', features)
    os.replace(path + '.tmp.npy', path)
  except OSError as e:
    from absl import logging  # pylint: disable=g-import-not-at-top
    logging.warning('Could not cache the real images\' Inception features in %s (%s)', path, e)
  return features


class InceptionEvaluator:
  """Paper-comparable FID and KID of generated images against a fixed set of real images (the training split, a
  fixed random subset of at most `max_real`), whose features are computed once (`cached_features`)."""

  def __init__(self, weights_path: str, real_images: np.ndarray, data_range: tuple[float, float], cache_dir: str,
               *, max_real: int = 10000, seed: int = 0, batch_size: int = inception.DEFAULT_BATCH_SIZE):
    """Loads the weights (errors.DataError for a bad file) and the real features.

    Args:
      weights_path: pytorch-fid's .pth or its converted .npz.
      real_images: uint8 [N, H, W, C] (C 1 or 3), the run's training images.
      data_range: the range of the generated images given to `evaluate`.
      cache_dir: where the real features are cached.
      max_real: at most this many real images (a fixed random subset, by `seed`, when N is larger).
      seed: picks the subset.
      batch_size: images per compiled batch.
    """
    self.weights = inception.load_weights(weights_path)
    self.data_range = (float(data_range[0]), float(data_range[1]))
    self.batch_size = batch_size
    real = inception.as_rgb(real_images)
    if len(real) > max_real:
      real = real[np.sort(np.random.default_rng(seed).choice(len(real), max_real, replace=False))]
    self.image_shape = real.shape[1:]
    self.real_features = cached_features(self.weights, real, cache_dir, batch_size)
    self.real_mu, self.real_sigma = metrics.gaussian_stats(self.real_features)

  def protocol(self, num_fake: int) -> dict[str, Any]:
    """How the numbers are made, for `history.json`: network, weights, image counts, resize, KID estimator."""
    height, width, _ = self.image_shape
    return {'feature_network': f'pytorch-fid InceptionV3 (FID variant), pool3, {inception.FEATURE_DIM}-d',
            'weights': os.path.basename(self.weights.path), 'weights_sha256': self.weights.sha256,
            'source_sha256': self.weights.source_sha256, 'release_weights': self.weights.is_release,
            'num_real': len(self.real_features), 'real': 'training split (fixed random subset when larger)',
            'num_fake': int(num_fake),
            'resize': f'bilinear {width}x{height} -> {inception.INPUT_SIZE}x{inception.INPUT_SIZE}, '
                      'align_corners=False, no antialiasing; uint8 as in a PNG, [0, 255] -> [-1, 1]',
            'kid': f'{KID_SUBSETS} subsets of min({KID_SUBSET_SIZE}, n), kernel (x.y/{inception.FEATURE_DIM} + 1)^3, '
                   f'seed {KID_SEED}'}

  def evaluate(self, generated: Any) -> dict[str, float]:
    """Scores generated images, float [M, H, W, C] in `data_range` (M >= 2), quantized to uint8 first as a saved
    PNG would be. Returns `{key: float}` for every key of `KEYS`, all NaN when a generated value is NaN or Inf."""
    generated = np.asarray(generated, np.float32)
    if not np.all(np.isfinite(generated)):
      return {key: math.nan for key in KEYS}
    features = inception.extract_features(self.weights, visualize.to_uint8(generated, self.data_range),
                                          self.batch_size)
    kid = metrics.kid(features, self.real_features, KID_SUBSETS, KID_SUBSET_SIZE, KID_SEED)
    return {'inception_fid': metrics.frechet_distance(*metrics.gaussian_stats(features), self.real_mu,
                                                      self.real_sigma),
            'inception_kid': kid.mean, 'inception_kid_stderr': kid.stderr}
