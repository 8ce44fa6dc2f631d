"""Training images: loading a whole split into memory, scaling, and deterministic batching.

A DCGAN split (MNIST-sized) fits in host memory, so the pipeline is deliberately simple:

* `resolve_source` turns `config.data.source='auto'` into `'tfds'` (the TFDS dataset is prepared or downloadable)
  or `'bundled'` (the MNIST test digits that ship with the package, see `bundled`), saying so in one line.
* `load_images` reads the whole split once, as uint8 `[N, H, W, C]`, through TFDS (`config.data.source='tfds'`),
  from the bundled MNIST copy (`source='bundled'`), from a directory of MNIST-format IDX files (`source='idx'`),
  both of which work with no network at all, or from a directory of image files (`source='folder'`, see
  `image_folder`).
* `EpochBatcher` cuts that array into batches whose content depends only on `(seed, step)`, so a run resumed from a
  checkpoint at step `s` sees exactly the batches an uninterrupted run would have seen from `s` on.
* `to_float` maps uint8 pixels to the model's float range; it is plain arithmetic so it also runs inside `jax.jit`.
* `load_labelled` reads the images with their class labels, for class-conditional runs (`config.num_classes` > 0):
  the IDX labels file beside the images file, TFDS's 'label' feature, or a folder's first-level subdirectories.
  Unconditional runs never read labels.

Every problem a user can fix (missing directory, corrupt file, unprepared TFDS dataset) raises `errors.DataError`
with a one-line message that names the path or dataset and says what to do.
"""

import fnmatch
import gzip
import math
import os
import re
import socket
from typing import Any, Optional, Sequence, Tuple
import zlib

from absl import logging
import ml_collections
import numpy as np

from dcgan_jax.data import bundled
from dcgan_jax import errors
from dcgan_jax.data import image_folder

SOURCES = ('auto', 'tfds', 'bundled', 'idx', 'folder')

# The offline fallback, spelled exactly as it is typed on the command line.
IDX_ALTERNATIVE = '--config.data.source=idx --config.data.path=DIR --config.data.split=test'

# IDX element-type codes (third magic byte); only uint8 images are supported, the rest name the type in errors.
_IDX_UINT8 = 0x08
_IDX_TYPE_NAMES = {0x08: 'uint8', 0x09: 'int8', 0x0B: 'int16', 0x0C: 'int32', 0x0D: 'float32', 0x0E: 'float64'}
_GZIP_MAGIC = b'\x1f\x8b'

_IDX_TRAIN_PATTERNS = ('*train-images-idx3-ubyte', '*train-images-idx3-ubyte.gz')
# MNIST calls its test files t10k-*; EMNIST calls them *-test-*.
_IDX_TEST_PATTERNS = ('*t10k-images-idx3-ubyte', '*t10k-images-idx3-ubyte.gz', '*test-images-idx3-ubyte',
                      '*test-images-idx3-ubyte.gz')
_IDX_SPLIT_PATTERNS = {'train': _IDX_TRAIN_PATTERNS, 'test': _IDX_TEST_PATTERNS, 't10k': _IDX_TEST_PATTERNS}

# TFDS downloads most image datasets (MNIST included) from this host. TFDS retries a failed download for minutes,
# so an unprepared dataset on an offline machine is detected with one quick connection attempt instead.
_TFDS_DOWNLOAD_HOST = ('storage.googleapis.com', 443)
_PROBE_TIMEOUT_S = 3.0

# Gathers this many examples per tf.data batch when reading a TFDS split into memory.
_TFDS_READ_CHUNK = 8192


def read_idx(path: str) -> np.ndarray:
  """Reads one MNIST-format IDX file of unsigned bytes.

  The format is a 4-byte magic number (0, 0, element type, number of dimensions), one big-endian uint32 per
  dimension, then the elements in row-major order. Gzip-compressed files (`.gz`, or any file starting with the gzip
  magic bytes) are decompressed transparently.

  Args:
    path: the IDX file, raw or gzip-compressed.

  Returns:
    uint8 array whose shape is the header's dimensions, e.g. `[N, 28, 28]` for an MNIST images file; values 0..255.

  Raises:
    errors.DataError: the file is missing or unreadable, is not gzip although named `.gz`, is not an IDX file, holds
      a type other than uint8, or has a size that disagrees with its header.
  """
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except OSError as e:
    raise errors.DataError(f'cannot read IDX file {path}: {e.strerror or e}; check the path and its permissions')

  if path.endswith('.gz') or data.startswith(_GZIP_MAGIC):
    try:
      data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
      raise errors.DataError(f'{path} is not a readable gzip file ({type(e).__name__}: {e}); the download is '
                             'probably incomplete or corrupt: fetch it again, or gunzip a good copy')

  if len(data) < 4 or data[0] != 0 or data[1] != 0:
    raise errors.DataError(f'{path} is not an IDX file (its first bytes are {data[:4].hex() or "missing"}, '
                           'expected 0000 then type and rank); point --config.data.path at MNIST-format IDX files')
  dtype_code, ndim = data[2], data[3]
  if dtype_code != _IDX_UINT8:
    type_name = _IDX_TYPE_NAMES.get(dtype_code, 'unknown')
    raise errors.DataError(f'{path} is an IDX file of type 0x{dtype_code:02x} ({type_name}), not 0x08 (uint8 '
                           'pixels); use an images file such as train-images-idx3-ubyte')
  if ndim == 0:
    raise errors.DataError(f'{path} is not an IDX file (its header declares 0 dimensions); use an images file '
                           'such as train-images-idx3-ubyte')

  header_size = 4 + 4 * ndim
  if len(data) < header_size:
    raise errors.DataError(f'{path} is truncated: its {ndim}-dimension header needs {header_size} bytes but the '
                           f'file has {len(data)}; fetch the file again')
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
  expected = header_size + math.prod(shape)
  if len(data) < expected:
    raise errors.DataError(f'{path} is truncated: its header (shape {shape}) says {expected} bytes but the '
                           f'(decompressed) file has {len(data)}; fetch the file again')
  if len(data) > expected:
    raise errors.DataError(f'{path} has {len(data) - expected} bytes beyond what its header (shape {shape}) '
                           f'describes ({expected} bytes in all); it is not a well-formed IDX file, fetch it again')
  # frombuffer over `bytes` is read-only; the copy gives callers an ordinary writable array.
  return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def find_idx_images(path: str, split: str) -> str:
  """Finds the images file of `split` in a directory of IDX files.

  'train' matches `*train-images-idx3-ubyte[.gz]`; 'test' or 't10k' matches `*t10k-images-idx3-ubyte[.gz]` or
  `*test-images-idx3-ubyte[.gz]` (MNIST, Fashion-MNIST, and EMNIST names such as
  `emnist-letters-test-images-idx3-ubyte.gz`).

  Args:
    path: the directory holding the IDX files.
    split: 'train', 'test' or 't10k'.

  Returns:
    The full path of the single matching file.

  Raises:
    errors.DataError: the split is not one of the above, the directory is missing or empty, or no file or more than
      one file matches.
  """
  patterns = _IDX_SPLIT_PATTERNS.get(split)
  if patterns is None:
    raise errors.DataError(f"split {split!r} is not available from IDX files in {path}; set "
                           "--config.data.split to 'train' or 'test'")
  looked_for = ', '.join(patterns)
  if not path:
    raise errors.DataError(f'--config.data.path is empty; set it to a directory holding {looked_for}')
  if not os.path.isdir(path):
    what = 'is not a directory' if os.path.exists(path) else 'does not exist'
    raise errors.DataError(f'IDX data directory {path} {what}; set --config.data.path to a directory holding '
                           f'{looked_for}')
  entries = sorted(os.listdir(path))
  if not entries:
    raise errors.DataError(f'IDX data directory {path} is empty; put the {split} images file there '
                           f'(one of {looked_for})')
  matches = [name for name in entries
             if any(fnmatch.fnmatchcase(name, p) for p in patterns) and os.path.isfile(os.path.join(path, name))]
  if not matches:
    raise errors.DataError(f'no {split} images file in {path} (looked for {looked_for}; found '
                           f'{_preview(entries)}); put the IDX file there or fix --config.data.path')
  if len(matches) > 1:
    raise errors.DataError(f'more than one {split} images file in {path}: {", ".join(matches)}; keep exactly one '
                           '(e.g. a separate directory per dataset, and not both a file and its .gz)')
  return os.path.join(path, matches[0])


def resolve_source(data_config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Picks the concrete data source for `data_config.source='auto'`; other sources are returned unchanged.

  'auto' means TFDS's dataset `data_config.name` when it is prepared or can be downloaded (downloading it then),
  otherwise the bundled copy when the package carries one (MNIST's 10,000 test digits), saying so in one log line.
  A dataset with neither fails with the TFDS error.

  Args:
    data_config: `config.data` (`source`, `name`, `split`, `data_dir`).

  Returns:
    `data_config` itself for a concrete source, else a copy whose `source` is 'tfds' or 'bundled' (and `split`
    'test' for the bundled copy).

  Raises:
    errors.DataError: an unknown TFDS name, or a dataset that is not prepared, cannot be downloaded and has no
      bundled copy.
  """
  if data_config.source != 'auto':
    return data_config
  resolved = ml_collections.ConfigDict(data_config.to_dict())
  try:
    _open_tfds(data_config.name, data_config.split, data_config.get('data_dir') or None)
    resolved.source = 'tfds'
  except TfdsUnavailableError as e:
    if not bundled.has_copy(data_config.name):
      raise
    logging.warning('TFDS %r is not available (%s): training on the bundled MNIST test digits (%d images, shipped '
                    'with dcgan_jax); --config.data.source=tfds insists on TFDS.', data_config.name, e.reason,
                    bundled.NUM_IMAGES)
    resolved.source, resolved.split = 'bundled', bundled.SPLIT
  return resolved


def load_images(data_config: ml_collections.ConfigDict, files_out: Optional[list] = None) -> np.ndarray:
  """Loads a whole split into host memory.

  Args:
    data_config: `config.data`, with `source` ('auto', 'tfds', 'bundled', 'idx' or 'folder'; 'auto' is resolved
      by `resolve_source`), `name` (TFDS name), `split`, `path` (IDX or image directory), `data_dir` (TFDS
      data_dir; '' or None for TFDS's default), `image_size` and `channels` (the folder source resizes and converts
      to them), and `transpose` (optional, default False: swap every image's height and width axes, for EMNIST).
    files_out: folder source only: when given, each returned image's path is appended to it, in order.

  Returns:
    uint8 array `[N, H, W, C]` with N >= 1, values 0..255 (C = 1 for MNIST-like data); for a folder larger than
    `max_host_bytes`, an `image_folder.StreamedFolder` that indexes like one.

  Raises:
    errors.DataError: unknown source, missing/corrupt/empty data, an unknown TFDS name, or a TFDS dataset that is
      not prepared and cannot be downloaded.
  """
  data_config = resolve_source(data_config)
  source = data_config.source
  if source in ('idx', 'bundled'):
    where = idx_images_file(data_config)
    images = read_idx(where)
  elif source == 'tfds':
    images = _load_tfds(data_config.name, data_config.split, data_config.get('data_dir') or None)
    where = f'TFDS dataset {data_config.name!r} split {data_config.split!r}'
  elif source == 'folder':
    images = image_folder.load_folder(data_config.path, data_config.image_size, data_config.channels,
                                      max_bytes=data_config.get('max_host_bytes', 0), files_out=files_out)
    where = data_config.path
  else:
    raise errors.DataError(f'unknown --config.data.source={source!r}; allowed values: {", ".join(SOURCES)}')

  if images.ndim == 3:
    images = images[..., np.newaxis]
  if images.ndim != 4:
    raise errors.DataError(f'{where} holds data of shape {images.shape}, not images [N, H, W] or [N, H, W, C]; '
                           'use an image dataset')
  if images.shape[0] == 0:
    raise errors.DataError(f'{where} has no images (shape {images.shape}); choose a non-empty split')
  if data_config.get('transpose', False) and isinstance(images, image_folder.StreamedFolder):
    images = images.transpose_images()
  elif data_config.get('transpose', False):
    # A contiguous copy: batches gathered from a transposed view would be strided, slower reads every step.
    images = np.ascontiguousarray(images.transpose(0, 2, 1, 3))
  return images


def label_file_for(images_path: str) -> str:
  """The IDX labels file beside an images file: `...-images-idx3-ubyte[.gz]` -> `...-labels-idx1-ubyte[.gz]`.

  Raises:
    errors.DataError: there is none.
  """
  directory, name = os.path.split(images_path)
  stem = re.sub(r'-images-idx3-ubyte(\.gz)?$', '', name)
  candidates = [n for n in sorted(os.listdir(directory))
                if fnmatch.fnmatchcase(n, f'{stem}-labels-idx1-ubyte') or fnmatch.fnmatchcase(
                    n, f'{stem}-labels-idx1-ubyte.gz')]
  if not candidates:
    raise errors.DataError(f'no labels file for {name} in {directory} (looked for {stem}-labels-idx1-ubyte[.gz]); '
                           'put the matching IDX labels file there')
  return os.path.join(directory, candidates[0])


def read_idx_labels(path: str) -> np.ndarray:
  """Reads an IDX labels file (magic 0x00000801: one dimension of uint8), raw or gzip-compressed.

  Returns:
    int32 [N], the labels.

  Raises:
    errors.DataError: unreadable, not IDX, not a 1-D uint8 file, or the wrong size.
  """
  # read_idx validates the header, the type and the size for any rank; only the rank is checked here.
  labels = read_idx(path)
  if labels.ndim != 1:
    raise errors.DataError(f'{path} holds data of shape {labels.shape}, not labels (an IDX file with magic '
                           '0x00000801, one dimension); use a *-labels-idx1-ubyte file')
  return labels.astype(np.int32)


def load_labels(data_config: ml_collections.ConfigDict) -> np.ndarray:
  """The labels of the split that `load_images(data_config)` reads (source idx, bundled or tfds; 'auto' resolved
  first), in the same order: int32 [N].

  Raises:
    errors.DataError: no labels file beside the IDX images, a TFDS dataset without a 'label' feature, or another
      source (folders: `load_labelled`).
  """
  data_config = resolve_source(data_config)
  if data_config.source in ('idx', 'bundled'):
    return read_idx_labels(label_file_for(idx_images_file(data_config)))
  if data_config.source != 'tfds':
    raise errors.DataError(f'--config.data.source={data_config.source!r} has no labels file; labels come from the '
                           'tfds, bundled or idx sources, or from a folder\'s subdirectories (load_labelled)')
  ds = _open_tfds(data_config.name, data_config.split, data_config.get('data_dir') or None)
  if not isinstance(ds.element_spec, dict) or 'label' not in ds.element_spec:
    raise errors.DataError(f'TFDS dataset {data_config.name!r} has no "label" feature; a class-conditional run or '
                           'the classifier metrics need a labelled dataset')
  labels = read_tfds_feature(ds, 'label')
  return labels.astype(np.int32) if labels is not None else np.zeros((0,), np.int32)


def load_labelled(data_config: ml_collections.ConfigDict,
                  num_classes: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
  """A split with its class labels, for a class-conditional run.

  Args:
    data_config: `config.data`, as for `load_images`.
    num_classes: `config.num_classes` (> 0): every label must be below it.

  Returns:
    `(images as load_images returns them, labels int32 [N] in 0..num_classes-1, class names)`: the names are a
    folder's sorted first-level subdirectories, else '0', '1', ... up to num_classes - 1.

  Raises:
    errors.DataError: no labels (see `load_labels`, `image_folder.class_labels`), as many labels as images not,
      or a label (a folder's number of classes) beyond `num_classes`.
  """
  data_config = resolve_source(data_config)
  files: list = []
  images = load_images(data_config, files_out=files)
  if data_config.source == 'folder':
    labels, names = image_folder.class_labels(data_config.path, files)
    if len(names) != num_classes:
      raise errors.DataError(f'{data_config.path} has {len(names)} class subdirectories ({_preview(names)}), but '
                             f'config.num_classes={num_classes}; set --config.num_classes={len(names)}')
  else:
    labels, names = load_labels(data_config), tuple(str(k) for k in range(num_classes))
  where = f'{data_config.source}:{data_config.name if data_config.source == "tfds" else data_config.path}'
  if labels.shape[0] != images.shape[0]:
    raise errors.DataError(f'{where}: {images.shape[0]} images but {labels.shape[0]} labels; the labels must match '
                           'the images one to one')
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise errors.DataError(f'{where} has labels {labels.min()}..{labels.max()}, outside 0..{num_classes - 1} '
                           f'(config.num_classes={num_classes}); set --config.num_classes={labels.max() + 1}')
  return images, labels, names


def idx_images_file(data_config: ml_collections.ConfigDict) -> str:
  """The IDX images file behind source 'idx' (in `data_config.path`, of `data_config.split`) or 'bundled' (the
  package's copy of MNIST's test split, whatever `split` says)."""
  if data_config.source == 'bundled':
    return find_idx_images(bundled.directory(data_config.name), bundled.SPLIT)
  return find_idx_images(data_config.path, data_config.split)


def to_float(images: Any, data_range: Tuple[float, float] = (-1.0, 1.0)) -> Any:
  """Maps uint8 pixels linearly onto `data_range`: 0 -> lo and 255 -> hi, both exactly.

  Works on numpy and jax arrays alike (and under `jax.jit`), returning the same kind of array.

  Args:
    images: uint8 array of any shape, values 0..255.
    data_range: `(lo, hi)`, e.g. `(-1, 1)` for a tanh generator or `(0, 1)`.

  Returns:
    float32 array of the same shape, values in [lo, hi].
  """
  if images.dtype != np.uint8:
    raise TypeError(f'to_float expects uint8 pixels, got dtype {images.dtype}')
  lo, hi = float(data_range[0]), float(data_range[1])
  if not lo < hi:
    raise ValueError(f'data_range must have lo < hi, got {data_range}')
  t = images.astype(np.float32) / 255.0
  # The two-sided blend (rather than lo + (hi - lo) * t) hits both endpoints exactly in float32.
  return lo * (1.0 - t) + hi * t


class EpochBatcher:
  """Deterministic, resumable batches of an in-memory image array.

  Epoch `e` visits the images in the order `np.random.default_rng([seed, e]).permutation(N)`, cut into
  `steps_per_epoch` batches (the last `N % batch_size` images of each permutation are dropped). The batch of global
  step `s` therefore depends only on `(seed, s)`: restarting at step `s` reproduces the original sequence.
  """

  def __init__(self, images: np.ndarray, batch_size: int, seed: int, labels: Optional[np.ndarray] = None):
    """Wraps `images` (not copied).

    Args:
      images: array `[N, ...]`, typically uint8 `[N, H, W, C]`.
      batch_size: images per batch, >= 1.
      seed: non-negative integer; selects the per-epoch orders.
      labels: optional int32 `[N]`, the class of each image (class-conditional runs): `batch_labels(step)` gives
        those of `batch(step)`, in the same order.

    Raises:
      errors.ConfigError: batch_size < 1 or seed < 0.
      errors.DataError: fewer than `batch_size` images.
    """
    if batch_size < 1:
      raise errors.ConfigError(f'--config.batch_size must be >= 1, got {batch_size}')
    if seed < 0:
      raise errors.ConfigError(f'--config.seed must be a non-negative integer, got {seed}')
    num_images = images.shape[0]
    if num_images < batch_size:
      raise errors.DataError(f'the dataset has {num_images} images, fewer than the batch size {batch_size}; lower '
                             '--config.batch_size or use a larger split')
    if labels is not None and np.shape(labels) != (num_images,):
      raise errors.DataError(f'{num_images} images but labels of shape {np.shape(labels)}; give one label per image')
    self._images, self._labels = images, labels
    self._batch_size = int(batch_size)
    self._seed = int(seed)
    self._steps_per_epoch = num_images // self._batch_size
    self._cached: Tuple[int, Optional[np.ndarray]] = (-1, None)

  @property
  def steps_per_epoch(self) -> int:
    """Full batches per epoch: N // batch_size."""
    return self._steps_per_epoch

  @property
  def batch_size(self) -> int:
    return self._batch_size

  @property
  def num_images(self) -> int:
    return self._images.shape[0]

  def epoch(self, step: int) -> int:
    """The epoch (0-based) that global step `step` belongs to."""
    return step // self._steps_per_epoch

  def _permutation(self, epoch: int) -> np.ndarray:
    cached_epoch, perm = self._cached
    if cached_epoch != epoch or perm is None:
      perm = np.random.default_rng([self._seed, epoch]).permutation(self._images.shape[0])
      self._cached = (epoch, perm)
    return perm

  def indices(self, step: int) -> np.ndarray:
    """Positions in `images` of the batch of global step `step` (>= 0): int32 `[batch_size]`.

    Lets a caller holding the images elsewhere (on the device) gather the same batch as `batch(step)`.
    """
    if step < 0:
      raise ValueError(f'step must be >= 0, got {step}')
    epoch, index = divmod(step, self._steps_per_epoch)
    start = index * self._batch_size
    return self._permutation(epoch)[start:start + self._batch_size].astype(np.int32)

  def batch(self, step: int) -> np.ndarray:
    """The batch of global step `step` (>= 0).

    Returns:
      A new array `[batch_size, ...]` with the dtype of `images`.
    """
    return self._images[self.indices(step)]

  def batch_labels(self, step: int) -> np.ndarray:
    """The labels of `batch(step)`, in its order: int32 `[batch_size]`.

    Raises:
      ValueError: the batcher was made without labels.
    """
    if self._labels is None:
      raise ValueError('this EpochBatcher has no labels; pass labels= when making it')
    return np.asarray(self._labels)[self.indices(step)].astype(np.int32)


def _preview(names: Sequence[str], limit: int = 8) -> str:
  """Names for an error message, shortened so the message stays one readable line."""
  shown = ', '.join(names[:limit])
  return shown + (f', ... ({len(names)} entries)' if len(names) > limit else '')


def _download_server_reachable() -> bool:
  """Whether TFDS's download host accepts a TCP connection within a few seconds."""
  try:
    socket.create_connection(_TFDS_DOWNLOAD_HOST, timeout=_PROBE_TIMEOUT_S).close()
    return True
  except OSError:
    return False


class TfdsUnavailableError(errors.DataError):
  """A TFDS dataset is not prepared and cannot be downloaded; `reason` says why in a few words."""

  def __init__(self, name: str, split: str, data_dir: Optional[str], reason: str):
    self.reason = f'not prepared, and {reason}'
    where = data_dir or "TFDS's default data_dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    fallback = ('--config.data.source=auto trains on the MNIST digits that ship with dcgan_jax, or '
                if bundled.has_copy(name) else '')
    super().__init__(
        f'TFDS dataset {name!r} (split {split!r}) is not prepared in {where} and {reason}; prepare it on a '
        f'machine with network and copy it into --config.data.data_dir, or offline: {fallback}read MNIST-format '
        f'IDX files with {IDX_ALTERNATIVE} (e.g. Debian\'s dataset-fashion-mnist package puts them in '
        '/usr/share/datasets/fashion-mnist)')


def _open_tfds(name: str, split: str, data_dir: Optional[str]) -> Any:
  """`tfds.load` of a split as a `tf.data.Dataset`, downloading only if the network is there.

  Raises:
    TfdsUnavailableError: not prepared, and the download host is unreachable or the download failed.
    errors.DataError: an unknown dataset or split.
  """
  # TensorFlow is slow to import; IDX users never pay for it.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def load(download: bool):
    return tfds.load(name, split=split, data_dir=data_dir, download=download, shuffle_files=False)

  try:
    # download=False fails within milliseconds when the data is absent; letting TFDS try a download offline
    # instead hangs in its retry loop for minutes (measured: ~200 s for mnist) before a requests ConnectionError.
    return load(download=False)
  except tfds.core.DatasetNotFoundError:
    raise errors.DataError(f'unknown TFDS dataset {name!r}; check --config.data.name (e.g. mnist, fashion_mnist, '
                           'emnist/letters)') from None
  except AssertionError:
    # tfds.load(download=False) asserts that the prepared data exists; nothing else in it raises AssertionError.
    if not _download_server_reachable():
      raise TfdsUnavailableError(
          name, split, data_dir, f'cannot be downloaded ({_TFDS_DOWNLOAD_HOST[0]} is unreachable: no network?)'
      ) from None
    try:
      return load(download=True)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure while downloading or preparing (network, disk, a missing optional dependency) ends the same
      # way for the user: the data is not there, and the offline routes avoid TFDS entirely.
      first_line = (str(e).splitlines() or [''])[0][:200]
      raise TfdsUnavailableError(name, split, data_dir,
                                 f'downloading it failed ({type(e).__name__}: {first_line})') from None
  except ValueError as e:
    # E.g. an unknown split name; TFDS's message lists the available splits.
    first_line = (str(e).splitlines() or [''])[0][:300]
    raise errors.DataError(f'TFDS cannot load {name!r} split {split!r}: {first_line}; check --config.data.split')


def read_tfds_feature(ds: Any, key: str) -> Optional[np.ndarray]:
  """Reads feature `key` of every example of a TFDS split into memory, in chunks of `_TFDS_READ_CHUNK` examples.

  batch_size=-1 in tfds.load batches by the split size from the dataset's metadata; reading in chunks does not
  depend on that metadata (mocked datasets have none, and batch(sys.maxsize) aborts the process).

  Args:
    ds: a `tf.data.Dataset` of feature dicts, as `tfds.load` returns for one split.
    key: the feature to read, e.g. 'image' or 'label'.

  Returns:
    The feature of all examples stacked along a new first axis, or None if the split has no examples.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  chunks = list(tfds.as_numpy(ds.map(lambda ex: ex[key]).batch(_TFDS_READ_CHUNK)))
  return np.concatenate(chunks) if chunks else None


def _load_tfds(name: str, split: str, data_dir: Optional[str]) -> np.ndarray:
  """Reads `split` of TFDS dataset `name` as uint8 `[N, H, W, C]`, downloading only if the network is there."""
  ds = _open_tfds(name, split, data_dir)
  features = ds.element_spec
  if not isinstance(features, dict) or 'image' not in features:
    keys = ', '.join(sorted(features)) if isinstance(features, dict) else type(features).__name__
    raise errors.DataError(f'TFDS dataset {name!r} has no "image" feature (it has: {keys}); choose an image dataset')
  images = read_tfds_feature(ds, 'image')
  if images is None:
    raise errors.DataError(f'TFDS dataset {name!r} split {split!r} has no images; choose a non-empty split')
  if images.dtype != np.uint8:
    raise errors.DataError(f'TFDS dataset {name!r} has {images.dtype} images, not uint8 pixels; choose an image '
                           'dataset with 8-bit images')
  return images
