"""Data that ships with the package: the MNIST test set (10,000 digits and labels, IDX gz files, CC BY-SA 3.0).

It makes `python main.py --config=configs/mnist.py` work on a machine without network: `data.source='bundled'`
reads it, and `data.source='auto'` (the default) falls back to it when TFDS's `mnist` is neither prepared nor
downloadable. `dcgan_jax/data/README.md` states the origin, licence and checksums.
"""

import hashlib
import os

from dcgan_jax import errors

# The dataset names (TFDS spelling) that have a bundled copy, and the directory of its IDX files.
DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mnist')
NAMES = ('mnist',)
SPLIT = 'test'  # The bundled copy is MNIST's test split (the t10k files).
NUM_IMAGES = 10_000

# sha256 of each file, as TFDS records them for MNIST's canonical files.
SHA256 = {
    't10k-images-idx3-ubyte.gz': '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz': 'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
}


def has_copy(name: str) -> bool:
  """Whether TFDS dataset `name` has a bundled copy (only 'mnist')."""
  return name in NAMES


def directory(name: str = 'mnist') -> str:
  """The directory of the bundled IDX files of dataset `name`.

  Raises:
    errors.DataError: `name` has no bundled copy, or the package was installed without its data files.
  """
  if not has_copy(name):
    raise errors.DataError(f'--config.data.source=bundled has no copy of {name!r} (bundled: {", ".join(NAMES)}); '
                           'use --config.data.source=tfds, idx or folder for other data')
  missing = [f for f in SHA256 if not os.path.isfile(os.path.join(DIRECTORY, f))]
  if missing:
    raise errors.DataError(f'the bundled MNIST files {", ".join(missing)} are missing from {DIRECTORY}; reinstall '
                           'dcgan_jax (pip install .) or use --config.data.source=tfds or idx')
  return DIRECTORY


def verify() -> dict[str, str]:
  """Checks every bundled file against its recorded sha256; returns `{file: sha256}`.

  Raises:
    errors.DataError: a file is missing or its checksum differs (a damaged checkout or install).
  """
  found = {}
  for name, expected in SHA256.items():
    path = os.path.join(DIRECTORY, name)
    with open(path, 'rb') as f:
      found[name] = hashlib.sha256(f.read()).hexdigest()
    if found[name] != expected:
      raise errors.DataError(f'{path} has sha256 {found[name]}, expected {expected}; the file is damaged: '
                             'reinstall dcgan_jax')
  return found
