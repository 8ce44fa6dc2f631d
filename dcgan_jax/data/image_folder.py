"""The `folder` data source: every image file under a directory, decoded once into one uint8 array (or, for a
folder too large for memory, a `StreamedFolder` that decodes each batch when it is used).

Each file (png, jpg, jpeg, webp or bmp, any letter case, in `path` or any subdirectory; symlinks followed, each
real directory and file once) is

1. decoded with Pillow (for JPEG at the smallest 1/2, 1/4 or 1/8 scale that still covers the target size, which is
   much faster for photos), and turned upright by its EXIF orientation tag (phone photos);
2. converted to the wanted channels:
   * 16-bit images keep their high byte (value // 256): Pillow does that itself for 16-bit RGB(A), and grayscale
     ('I;16', 'I') is treated the same way, so the whole 16-bit range maps onto 0..255;
   * transparency (RGBA, LA, and palette or grayscale images with a transparent color) is composited onto white,
     since fully transparent pixels hold arbitrary colors;
   * palette, bilevel, CMYK and other modes go through Pillow's conversion; RGB -> grayscale is Pillow's ITU-R
     601-2 luma, grayscale -> RGB repeats the gray value;
3. resized so that its short side is `image_size` and center-cropped to `image_size` x `image_size`, in one
   bicubic resampling of the central square (antialiased when shrinking).

Files are decoded by a thread pool (Pillow releases the GIL while decoding and resampling), in a fixed order
(sorted paths), so the array is the same on every run. Files that cannot be decoded are skipped and reported in one
warning line; no readable image at all is an error.
"""

import concurrent.futures
import os
from typing import Optional, Union

from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageOps

from dcgan_jax import errors

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
_SIXTEEN_BIT_GRAY = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
_ALPHA_MODES = ('RGBA', 'LA', 'PA', 'RGBa', 'La')
_NAMED_IN_WARNING = 3  # Unreadable files named in the warning line; the rest are counted.
_WHITE = (255, 255, 255, 255)


def list_images(path: str) -> list[str]:
  """Every image file (by extension, case-insensitive) under `path`, recursively, as sorted full paths.

  Symlinks are followed, but each real directory is read once: a directory symlink leading to a directory already
  read (a loop such as `loop -> .`, or a second way to the same directory) is not followed, and a file reached by
  more than one path (symlinks, hard links) is listed once, under the first path reached (a directory's files
  before its subdirectories, each in sorted order). Both are reported in one warning line.
  """
  found, seen_dirs, seen_files, repeated_dirs, repeated_files = [], set(), set(), [], 0
  for root, dirs, files in os.walk(path, followlinks=True):
    if not seen_dirs:
      seen_dirs.add(_identity(root))
    dirs.sort()  # os.walk visits subdirectories in this list's order.
    for d in list(dirs):
      identity = _identity(os.path.join(root, d))
      if identity in seen_dirs:
        dirs.remove(d)  # Pruned: os.walk does not descend into it.
        repeated_dirs.append(os.path.join(root, d))
      else:
        seen_dirs.add(identity)
    for f in sorted(files):
      if not f.lower().endswith(EXTENSIONS):
        continue
      identity = _identity(os.path.join(root, f))
      if identity in seen_files:
        repeated_files += 1
      else:
        seen_files.add(identity)
        found.append(os.path.join(root, f))
  if repeated_dirs or repeated_files:
    example = os.path.relpath(repeated_dirs[0], path) if repeated_dirs else ''
    logging.warning(
        'Image folder %s: %d directory symlink(s) lead to directories already read (loops or repeats; not followed '
        'again)%s; %d image file(s) reached by more than one path were read once.', path, len(repeated_dirs),
        f', e.g. {example} -> {os.readlink(repeated_dirs[0]) if os.path.islink(repeated_dirs[0]) else "?"}'
        if repeated_dirs else '', repeated_files)
  return found


def _identity(path: str) -> tuple[int, int]:
  """(device, inode) of what `path` leads to (symlinks followed): equal for every way to the same file or directory."""
  try:
    st = os.stat(path)
  except OSError:
    return (-1, hash(path))  # A dangling link: its own entry (decoding it reports the problem).
  return (st.st_dev, st.st_ino)


def _to_mode(img: Image.Image, channels: int) -> Image.Image:
  """`img` as 'L' (channels 1) or 'RGB' (channels 3), following the conversions in the module docstring."""
  if img.mode in _SIXTEEN_BIT_GRAY:
    # Pillow's own convert('L') clips 16-bit values at 255 instead of scaling them.
    values = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
    img = Image.fromarray((values >> 8).astype(np.uint8), 'L')
  if img.mode in _ALPHA_MODES or 'transparency' in img.info:
    img = Image.alpha_composite(Image.new('RGBA', img.size, _WHITE), img.convert('RGBA'))
  target = 'L' if channels == 1 else 'RGB'
  return img if img.mode == target else img.convert(target)


def decode(file: str, image_size: int, channels: int) -> np.ndarray:
  """One image file -> uint8 [image_size, image_size, channels] (see the module docstring for the steps).

  Raises:
    OSError, ValueError, SyntaxError or Pillow's DecompressionBombError: the file cannot be decoded.
  """
  with Image.open(file) as img:
    # A square request is unaffected by the EXIF rotation below; JPEG decodes at a reduced scale >= the request.
    img.draft(img.mode, (image_size, image_size))
    img = _to_mode(ImageOps.exif_transpose(img), channels)
    width, height = img.size
    side = min(width, height)
    box = ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)
    img = img.resize((image_size, image_size), Image.Resampling.BICUBIC, box=box)
    pixels = np.asarray(img, dtype=np.uint8)
  return pixels.reshape(image_size, image_size, channels)


def _memory_bytes() -> int:
  """Physical memory of this machine in bytes (0 when the platform does not say)."""
  try:
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  except (AttributeError, ValueError, OSError):
    return 0


def load_folder(path: str, image_size: int, channels: int, num_threads: Optional[int] = None,
                max_bytes: int = 0, files_out: Optional[list] = None) -> Union[np.ndarray, 'StreamedFolder']:
  """Decodes every image under `path` into memory, or streams them when they would not fit.

  Args:
    path: the directory (`config.data.path`).
    image_size: output height and width (`config.data.image_size`), > 0.
    channels: 1 (grayscale) or 3 (RGB) (`config.data.channels`).
    num_threads: decoding threads; None uses twice the CPU count, at most 16.
    max_bytes: above this many bytes of decoded images, return a `StreamedFolder` (decoded per access) instead of
      an array; 0 means half of this machine's memory (`config.data.max_host_bytes`).
    files_out: when given, the path of each returned image, in order, is appended to it (for `class_labels`).

  Returns:
    uint8 array [N, image_size, image_size, channels], N >= 1, in sorted path order (unreadable files left out); or
    a `StreamedFolder` indexing like one.

  Raises:
    errors.DataError: `path` is empty, missing or not a directory, holds no image files, or none of them decodes.
  """
  kinds = ', '.join(e[1:] for e in EXTENSIONS)
  if not path:
    raise errors.DataError(f'config.data.path is empty: source=folder needs a directory of images ({kinds}); set '
                           '--config.data.path=DIR')
  if not os.path.isdir(path):
    what = 'is not a directory' if os.path.exists(path) else 'does not exist'
    raise errors.DataError(f'image folder {path} {what}; set --config.data.path to a directory of images ({kinds})')
  files = list_images(path)
  if not files:
    raise errors.DataError(f'no image files ({kinds}) under {path}; put images there (subdirectories count) or fix '
                           '--config.data.path')

  workers = num_threads or min(16, 2 * (os.cpu_count() or 1))
  need = len(files) * image_size * image_size * channels
  limit = max_bytes or _memory_bytes() // 2
  if limit and need > limit:
    streamed = _streamed(path, files, image_size, channels, need, workers)
    if files_out is not None:
      files_out.extend(streamed.files)
    return streamed
  images = np.empty((len(files), image_size, image_size, channels), np.uint8)
  failures: dict[int, str] = {}

  def work(i: int) -> None:
    try:
      images[i] = decode(files[i], image_size, channels)
    except Exception as e:  # pylint: disable=broad-except
      # Pillow reports damaged files through many exception types (OSError, ValueError, SyntaxError, struct.error,
      # DecompressionBombError, ...); any of them means this one file is unusable, and the run goes on without it.
      # The messages often repeat the path, which the report names anyway.
      message = (str(e).splitlines() or [''])[0].replace(repr(files[i]), '').replace(files[i], '').strip(' :')
      failures[i] = f'{type(e).__name__}: {message[:120]}' if message else type(e).__name__

  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='image-folder') as pool:
    list(pool.map(work, range(len(files))))

  if failures:
    _report_unreadable(path, files, failures)
    images = images[np.setdiff1d(np.arange(len(files)), list(failures))]
  if files_out is not None:
    files_out.extend(f for i, f in enumerate(files) if i not in failures)
  return images


def class_labels(path: str, files: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
  """The classes of a folder's images: its first-level subdirectories, sorted by name, are classes 0, 1, ...

  Args:
    path: the folder (`config.data.path`).
    files: the images' paths, under `path` (as `load_folder` lists them through `files_out`).

  Returns:
    `(labels int32 [len(files)], class names)`: each file's class index, and the sorted subdirectory names.

  Raises:
    errors.DataError: an image lies directly in `path`, outside every class subdirectory.
  """
  names = tuple(sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))))
  index = {name: i for i, name in enumerate(names)}
  labels = np.empty((len(files),), np.int32)
  for i, f in enumerate(files):
    parts = os.path.relpath(f, path).split(os.sep)
    if len(parts) < 2:
      raise errors.DataError(f'{f} lies directly in {path}, outside a class subdirectory; a class-conditional run '
                             '(config.num_classes > 0) reads one subdirectory per class: move it into one')
    labels[i] = index[parts[0]]
  return labels, names


def _report_unreadable(path: str, files: list[str], failures: dict[int, str]) -> None:
  """One warning line for the files left out (or an error when none is left)."""
  failed = sorted(failures)
  names = [os.path.relpath(files[i], path) for i in failed[:_NAMED_IN_WARNING]]
  more = len(failures) - len(names)
  first = f'{names[0]}: {failures[failed[0]]}'
  if len(failures) == len(files):
    raise errors.DataError(f'none of the {len(files)} image files under {path} can be decoded (e.g. {first}); '
                           'check the files or --config.data.path')
  logging.warning('Skipped %d of %d image files under %s that cannot be decoded: %s%s (first: %s)', len(failures),
                  len(files), path, ', '.join(names), f' and {more} more' if more else '', first)


def _streamed(path: str, files: list[str], image_size: int, channels: int, need: int,
              workers: int) -> 'StreamedFolder':
  """A `StreamedFolder` of the files whose header Pillow can read (reading headers only is fast)."""
  failures: dict[int, str] = {}

  def check(i: int) -> None:
    try:
      with Image.open(files[i]) as img:
        img.verify()
    except Exception as e:  # pylint: disable=broad-except  (as in load_folder: any error means unusable)
      failures[i] = type(e).__name__

  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix='image-folder') as pool:
    list(pool.map(check, range(len(files))))
  if failures:
    _report_unreadable(path, files, failures)
  kept = [f for i, f in enumerate(files) if i not in failures]
  logging.info('Streaming %d images from %s: %.1f GiB decoded is more than config.data.max_host_bytes (0: half '
               'the memory), so each batch is decoded when it is used', len(kept), path, need / 2**30)
  return StreamedFolder(kept, image_size, channels, workers)


class StreamedFolder:
  """Image files read as a uint8 array `[N, S, S, C]` that is decoded on access, for folders too large to hold.

  Indexing with an integer, a slice or an integer array of any shape decodes just those files (in a thread pool)
  and returns `uint8 [*index_shape, S, S, C]`, exactly what `load_folder`'s array would hold. A file that stops
  decoding mid-run (its header was readable at the start) raises `errors.DataError` naming it.
  """

  def __init__(self, files: list[str], image_size: int, channels: int, num_threads: int = 4,
               transposed: bool = False):
    self.files = list(files)
    self._size, self._channels, self._threads, self._transposed = image_size, channels, num_threads, transposed
    self.shape = (len(self.files), image_size, image_size, channels)
    self.dtype = np.dtype(np.uint8)
    self.ndim = 4
    self.nbytes = int(np.prod(self.shape))

  def __len__(self) -> int:
    return len(self.files)

  def transpose_images(self) -> 'StreamedFolder':
    """The same files with each image's height and width swapped (`config.data.transpose`)."""
    return StreamedFolder(self.files, self._size, self._channels, self._threads, not self._transposed)

  def subset(self, positions: np.ndarray) -> 'StreamedFolder':
    """The files at `positions` (int array), still streamed."""
    return StreamedFolder([self.files[i] for i in np.asarray(positions)], self._size, self._channels,
                          self._threads, self._transposed)

  def _decode(self, i: int) -> np.ndarray:
    try:
      image = decode(self.files[i], self._size, self._channels)
    except Exception as e:  # pylint: disable=broad-except
      raise errors.DataError(f'{self.files[i]} can no longer be decoded ({type(e).__name__}: {e}); remove or '
                             'replace it and run the same command to resume') from e
    return image.transpose(1, 0, 2) if self._transposed else image

  def __getitem__(self, key) -> np.ndarray:
    positions = np.arange(len(self.files))[key]
    flat = np.asarray(positions).reshape(-1)
    with concurrent.futures.ThreadPoolExecutor(self._threads, thread_name_prefix='image-folder') as pool:
      images = list(pool.map(self._decode, flat))
    out = np.stack(images) if images else np.empty((0,) + self.shape[1:], np.uint8)
    return out.reshape(np.shape(positions) + self.shape[1:])
