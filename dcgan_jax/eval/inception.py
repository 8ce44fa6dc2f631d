"""The InceptionV3 of pytorch-fid (its `FIDInceptionA/C/E_1/E_2` variant of the 2015 TF Inception) in Flax, NHWC.

FID and KID in papers are computed on the 2048-d pool3 features of this network with the weights that pytorch-fid
distributes as `pt_inception-2015-12-05-6726825d.pth` (the TF graph's weights ported to PyTorch). This module
reproduces pytorch-fid's forward pass exactly:

1. uint8 images / 255 -> float32 in [0, 1] (torchvision's `ToTensor`); grayscale is repeated to 3 channels (as
   pytorch-fid's `Image.convert('RGB')` does);
2. bilinear resize to 299 x 299 as `F.interpolate(mode='bilinear', align_corners=False)` without antialiasing
   (source coordinate (i + 0.5) * in / out - 0.5, clamped at 0; two taps), written as two interpolation matrices;
3. 2 x - 1 -> [-1, 1];
4. the network: every convolution without bias, then BatchNorm (epsilon 1e-3, running statistics) and ReLU; the
   patched pools of pytorch-fid (3x3 average pools that do not count the zero padding, a 3x3 max pool in the last
   block); the final global average pool gives float32 [N, 2048].

Convolutions run at `Precision.HIGHEST` (full float32 on GPU/TPU too), so the features do not depend on the device.

Weights come from a file the user supplies: the `.pth` state dict as pytorch-fid distributes it (reading it needs
torch, imported only then) or the `.npz` that `convert` writes from it (the same arrays, keyed as in the state dict,
plus the source file's sha256), so that training needs no torch. `load_weights` checks every key and shape before
any work and records the sha256, which results print so that they name their weights.
"""

import dataclasses
import hashlib
import os
from typing import Any, Mapping, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dcgan_jax import errors

EXPECTED_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
               'pt_inception-2015-12-05-6726825d.pth')
# torch.hub names a release file by the first hex digits of its sha256, so the real file's digest starts with this.
RELEASE_SHA256_PREFIX = '6726825d'
FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPSILON = 1e-3
# The classifier head of the weights file: 1008 classes (the TF graph's), 1000 in torchvision's ImageNet Inception.
FC_CLASSES = 1008
SOURCE_SHA256_KEY = '__source_sha256__'
DEFAULT_BATCH_SIZE = 50  # pytorch-fid's default; any size gives the same features.

_FIX = f'pass {EXPECTED_FILE} from the pytorch-fid releases ({WEIGHTS_URL}) or the .npz that ' \
       '`python -m dcgan_jax.inception --convert=IN.pth --out=OUT.npz` writes from it'

Padding = tuple[tuple[int, int], tuple[int, int]]


def _pair(value: Union[int, Sequence[int]]) -> tuple[int, int]:
  return (value, value) if isinstance(value, int) else tuple(value)


class BasicConv(nn.Module):
  """Convolution (no bias) -> BatchNorm (epsilon 1e-3, running statistics) -> ReLU, torchvision's BasicConv2d."""
  features: int
  kernel: Union[int, Sequence[int]]
  strides: Union[int, Sequence[int]] = 1
  padding: Union[int, Sequence[int]] = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad_h, pad_w = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel), _pair(self.strides), ((pad_h, pad_h), (pad_w, pad_w)),
                use_bias=False, precision=jax.lax.Precision.HIGHEST, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  """3x3, stride 1, padding 1, averaging only the pixels inside the image (TF's pool; pytorch-fid's patch)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), (2, 2), 'VALID')


class InceptionA(nn.Module):
  """pytorch-fid's FIDInceptionA (Mixed_5b/c/d)."""
  pool_features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv(64, 1, name='branch1x1')(x)
    b5 = BasicConv(48, 1, name='branch5x5_1')(x)
    b5 = BasicConv(64, 5, padding=2, name='branch5x5_2')(b5)
    b3 = BasicConv(64, 1, name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, 3, padding=1, name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, 3, padding=1, name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, 1, name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision's InceptionB (Mixed_6a): the 35 -> 17 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv(384, 3, strides=2, name='branch3x3')(x)
    bd = BasicConv(64, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, 3, strides=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionC(nn.Module):
  """pytorch-fid's FIDInceptionC (Mixed_6b/c/d/e), factorized 7x7 convolutions."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    b1 = BasicConv(192, 1, name='branch1x1')(x)
    b7 = BasicConv(c7, 1, name='branch7x7_1')(x)
    b7 = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c7, 1, name='branch7x7dbl_1')(x)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, 1, name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision's InceptionD (Mixed_7a): the 17 -> 8 reduction."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv(192, 1, name='branch3x3_1')(x)
    b3 = BasicConv(320, 3, strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, 1, name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, 3, strides=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_stride2(x)], axis=-1)


class InceptionE(nn.Module):
  """pytorch-fid's FIDInceptionE_1 (Mixed_7b, average pool) and FIDInceptionE_2 (Mixed_7c, `max_pool=True`: the
  TF graph's max pool, kept by pytorch-fid as is)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = BasicConv(320, 1, name='branch1x1')(x)
    b3 = BasicConv(384, 1, name='branch3x3_1')(x)
    b3 = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = BasicConv(448, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv(384, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                          BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = BasicConv(192, 1, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def stem(x: jax.Array) -> jax.Array:
  """The convolutions and max pools before the first Inception block, [N, 299, 299, 3] -> [N, 35, 35, 192].

  Call it inside a compact method: its layers become children of that module (`Conv2d_1a_3x3` ...), at the top
  level of the parameters as in the state dict.
  """
  x = BasicConv(32, 3, strides=2, name='Conv2d_1a_3x3')(x)
  x = BasicConv(32, 3, name='Conv2d_2a_3x3')(x)
  x = BasicConv(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
  x = _max_pool_3x3_stride2(x)
  x = BasicConv(80, 1, name='Conv2d_3b_1x1')(x)
  x = BasicConv(192, 3, name='Conv2d_4a_3x3')(x)
  return _max_pool_3x3_stride2(x)


class FIDInceptionV3(nn.Module):
  """The network up to pool3. Input float32 [N, H, W, 3] in [-1, 1] (299 x 299 for the protocol); output float32
  [N, 2048], the global average of the last block. Parameter names follow the state dict (`Mixed_5b/branch1x1/
  conv/kernel` is `Mixed_5b.branch1x1.conv.weight`); the stem's layers sit at the top level as there."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = stem(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    return jnp.mean(x, axis=(1, 2))


def resize_matrix(in_size: int, out_size: int = INPUT_SIZE) -> np.ndarray:
  """The bilinear interpolation of `F.interpolate(mode='bilinear', align_corners=False, antialias=False)` along
  one axis as a matrix: float32 [out_size, in_size], each row two weights summing to 1.

  Output pixel i samples the input at scale * (i + 0.5) - 0.5, clamped at 0, with scale = in_size / out_size in
  float32, between the pixels floor() and floor() + 1 (clamped to the last). The source coordinate is rounded to
  float32 once, after the multiply-add (a fused multiply-add, as PyTorch's compiled kernel does): that reproduces
  PyTorch's weights bit for bit (two roundings differ in the last bit of many weights).
  """
  scale = np.float32(in_size) / np.float32(out_size)
  # float32 x float32 is exact in float64, and so is subtracting 0.5: one rounding, as a fused multiply-add.
  exact = np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5
  source = np.maximum(exact.astype(np.float32), np.float32(0))
  low = source.astype(np.int64)
  high = np.minimum(low + 1, in_size - 1)
  weight_high = source - low.astype(np.float32)
  matrix = np.zeros((out_size, in_size), np.float32)
  rows = np.arange(out_size)
  np.add.at(matrix, (rows, low), np.float32(1) - weight_high)
  np.add.at(matrix, (rows, high), weight_high)
  return matrix


def preprocess(images: jax.Array) -> jax.Array:
  """pytorch-fid's input path: [N, H, W, 3] uint8 (0..255) or float in [0, 1] -> float32 [N, 299, 299, 3] in
  [-1, 1] (scaled to [0, 1], bilinear resize to 299 x 299, then 2 x - 1)."""
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  rows, cols = resize_matrix(x.shape[1]), resize_matrix(x.shape[2])
  x = jnp.einsum('oh,nhwc->nowc', rows, x, precision=jax.lax.Precision.HIGHEST)
  x = jnp.einsum('pw,nowc->nopc', cols, x, precision=jax.lax.Precision.HIGHEST)
  return 2.0 * x - 1.0


@dataclasses.dataclass(frozen=True)
class InceptionWeights:
  """Loaded weights and where they came from.

  Attributes:
    variables: the Flax variables of `FIDInceptionV3` (`params`, `batch_stats`).
    path: the file read.
    sha256: the sha256 of that file.
    source_sha256: the sha256 of the `.pth` the weights came from (for a `.pth` its own; for a converted `.npz`
      the one recorded at conversion). pytorch-fid's release file's starts with `RELEASE_SHA256_PREFIX`.
  """
  variables: Mapping[str, Any]
  path: str
  sha256: str
  source_sha256: str

  @property
  def is_release(self) -> bool:
    """Whether these are pytorch-fid's released weights (judged by the source file's sha256 prefix)."""
    return self.source_sha256.startswith(RELEASE_SHA256_PREFIX)

  def describe(self) -> str:
    """One line naming the weights for results: file, sha256, and whether they are the release file's."""
    origin = '' if self.sha256 == self.source_sha256 else f', converted from a .pth with sha256 {self.source_sha256}'
    verdict = ('pytorch-fid release weights' if self.is_release else
               f'NOT the pytorch-fid release weights ({EXPECTED_FILE}): not comparable to papers')
    return f'{os.path.basename(self.path)} sha256 {self.sha256}{origin} ({verdict})'


def file_sha256(path: str) -> str:
  """Hex sha256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


_FLAX_TO_TORCH = {('params', 'conv', 'kernel'): 'conv.weight', ('params', 'bn', 'scale'): 'bn.weight',
                  ('params', 'bn', 'bias'): 'bn.bias', ('batch_stats', 'bn', 'mean'): 'bn.running_mean',
                  ('batch_stats', 'bn', 'var'): 'bn.running_var'}


def state_dict_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """The state-dict keys the network needs: key -> (path in the Flax variables, shape in the state dict's
  (PyTorch) layout, OIHW for convolution weights)."""
  shapes = jax.eval_shape(lambda: FIDInceptionV3().init(jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))))
  layout = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    names = tuple(p.key for p in path)
    suffix = _FLAX_TO_TORCH[(names[0],) + names[-2:]]
    shape = leaf.shape
    if names[-1] == 'kernel':  # HWIO -> OIHW
      shape = (shape[3], shape[2], shape[0], shape[1])
    layout['.'.join(names[1:-2] + (suffix,))] = (names, shape)
  return layout


def _read_pth(path: str) -> dict[str, np.ndarray]:
  """A .pth state dict as NumPy arrays; torch is imported only here."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.UserError(f'reading {path} needs torch (pip install torch); or convert it to .npz where torch is '
                           'installed: python -m dcgan_jax.inception --convert=IN.pth --out=OUT.npz') from None
  try:
    state = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  (pickle, zip and torch errors all mean: not a state dict)
    raise errors.DataError(f'cannot read weights file {path} as a PyTorch state dict ({type(e).__name__}: '
                           f'{str(e).splitlines()[0] if str(e) else ""}); {_FIX}') from None
  if not isinstance(state, Mapping):
    raise errors.DataError(f'weights file {path} holds a {type(state).__name__}, not a state dict; {_FIX}')
  return {k: v.numpy() for k, v in state.items() if isinstance(v, torch.Tensor)}


def _read_npz(path: str) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as archive:
      return {key: archive[key] for key in archive.files}
  except Exception as e:  # pylint: disable=broad-except  (zip, format and OS errors: not a weights archive)
    raise errors.DataError(f'cannot read weights file {path} as .npz ({type(e).__name__}: {e}); {_FIX}') from None


def variables_from_state_dict(state: Mapping[str, Any], path: str = 'the weights') -> dict[str, Any]:
  """Checks a state dict (key -> array in PyTorch layout) against the network and converts it.

  Keys the network does not use (`fc.*`, `*.num_batches_tracked`) are ignored.

  Returns:
    The Flax variables `{'params': ..., 'batch_stats': ...}` as float32 NumPy arrays (kernels HWIO).

  Raises:
    errors.DataError: keys missing, shapes wrong, non-finite values, or torchvision's ImageNet Inception (a
      1000-class head) instead of the FID Inception; one line naming `path`, the problem and the expected file.
  """
  layout = state_dict_layout()
  missing = [key for key in layout if key not in state]
  if len(missing) == len(layout):
    raise errors.DataError(f'{path} holds no InceptionV3 weights (none of the {len(layout)} expected keys, such as '
                           f'{missing[0]}); {_FIX}')
  if missing:
    raise errors.DataError(f'{path} lacks {len(missing)} of the {len(layout)} InceptionV3 weights (e.g. '
                           f'{", ".join(missing[:3])}); {_FIX}')
  wrong = [f'{key} {tuple(np.shape(state[key]))} instead of {shape}' for key, (_, shape) in layout.items()
           if tuple(np.shape(state[key])) != shape]
  if wrong:
    raise errors.DataError(f'{path}: {len(wrong)} weights have the wrong shape ({"; ".join(wrong[:3])}); {_FIX}')
  head = state.get('fc.weight')
  if head is not None and np.shape(head)[0] != FC_CLASSES:
    raise errors.DataError(f'{path} has a {np.shape(head)[0]}-class head: these are not the FID Inception weights '
                           f'(torchvision\'s ImageNet Inception has 1000 classes, the FID one {FC_CLASSES}); {_FIX}')
  variables: dict[str, Any] = {}
  for key, (names, _) in layout.items():
    value = np.asarray(state[key], np.float32)
    if not np.all(np.isfinite(value)):
      raise errors.DataError(f'{path}: {key} holds NaN or Inf values; the file is damaged; {_FIX}')
    if names[-1] == 'kernel':
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    node = variables
    for name in names[:-1]:
      node = node.setdefault(name, {})
    node[names[-1]] = value
  return variables


def read_state_dict(path: str) -> tuple[dict[str, np.ndarray], str, str]:
  """`(state dict, sha256 of the file, sha256 of the source .pth)` from a `.pth` or a converted `.npz`.

  Raises:
    errors.DataError: the file is missing, has another extension, or cannot be read.
  """
  if not os.path.isfile(path):
    raise errors.DataError(f'Inception weights file {path} does not exist; {_FIX}')
  extension = os.path.splitext(path)[1].lower()
  if extension not in ('.pth', '.pt', '.npz'):
    raise errors.DataError(f'Inception weights file {path} is neither .pth nor .npz; {_FIX}')
  sha256 = file_sha256(path)
  if extension == '.npz':
    state = _read_npz(path)
    source = state.pop(SOURCE_SHA256_KEY, None)
    return state, sha256, str(source) if source is not None else sha256
  return _read_pth(path), sha256, sha256


def load_weights(path: str) -> InceptionWeights:
  """The network's weights from pytorch-fid's `.pth` or a converted `.npz`, checked (see `read_state_dict`,
  `variables_from_state_dict`) and placed on the default device."""
  state, sha256, source = read_state_dict(path)
  variables = variables_from_state_dict(state, path)
  return InceptionWeights(jax.tree.map(jnp.asarray, variables), path, sha256, source)


def convert(pth_path: str, npz_path: str) -> InceptionWeights:
  """Writes the weights of a `.pth` as an `.npz` that loads without torch: the state dict's arrays (PyTorch
  layout, float32) under their keys, plus the `.pth`'s sha256 under `SOURCE_SHA256_KEY`.

  Returns:
    The weights as read from `pth_path` (checked before anything is written).
  """
  if not npz_path.endswith('.npz'):
    raise errors.UserError(f'--out={npz_path} must end in .npz')
  state, sha256, _ = read_state_dict(pth_path)
  variables_from_state_dict(state, pth_path)  # Checks before writing.
  arrays = {key: np.asarray(state[key], np.float32) for key in state_dict_layout()}
  arrays[SOURCE_SHA256_KEY] = np.array(sha256)
  try:
    np.savez(npz_path, **arrays)
  except OSError as e:
    raise errors.OutputError(f'cannot write --out={npz_path} ({type(e).__name__}: {e.strerror or e}); pass a '
                             'writable path') from None
  return load_weights(npz_path)


def as_rgb(images: Any) -> np.ndarray:
  """Images as [N, H, W, 3]: uint8 (0..255) or float (in [0, 1]) [N, H, W, 3], [N, H, W, 1] or [N, H, W]; one
  channel is repeated three times.

  Raises:
    errors.DataError: another shape or dtype, or no images.
  """
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] < 1 or x.dtype.kind not in 'uf' or (
      x.dtype.kind == 'u' and x.dtype != np.uint8):
    raise errors.DataError(f'images must be uint8 (or float in [0, 1]) [N, H, W, 3], [N, H, W, 1] or [N, H, W] '
                           f'with N >= 1, got {x.dtype} {list(np.shape(images))}')
  return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


@jax.jit
def _features(variables: Mapping[str, Any], images: jax.Array) -> jax.Array:
  return FIDInceptionV3().apply(variables, preprocess(images))


def extract_features(weights: Union[InceptionWeights, Mapping[str, Any]], images: Any,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
  """Pool3 features of `images` (any size; see `as_rgb` for the accepted arrays).

  The images go through one jit-compiled function in batches of min(batch_size, N) (one compilation per image
  size); the last batch is padded with zeros and the padding's features dropped.

  Returns:
    float32 [N, 2048].
  """
  variables = weights.variables if isinstance(weights, InceptionWeights) else weights
  x = as_rgb(images)
  if batch_size < 1:
    raise errors.ConfigError(f'batch_size={batch_size} must be at least 1')
  size = min(batch_size, x.shape[0])
  features = []
  for start in range(0, x.shape[0], size):
    batch = x[start:start + size]
    real = batch.shape[0]
    if real < size:
      batch = np.concatenate([batch, np.zeros((size - real,) + batch.shape[1:], batch.dtype)])
    features.append(np.asarray(_features(variables, batch))[:real])
  return np.concatenate(features).astype(np.float32)
