"""Inception pool3 features of images, or the conversion of pytorch-fid's weights to a torch-free .npz.

  python -m dcgan_jax.inception --weights=W --images=X.npy --out=F.npy [--batch_size=50]
  python -m dcgan_jax.inception --convert=pt_inception-2015-12-05-6726825d.pth --out=inception.npz

W is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (reading it needs torch) or its converted `.npz`. X holds
uint8 images [N, H, W, 3], [N, H, W, 1] or [N, H, W] (or X is an image folder); F gets float32 [N, 2048], computed
exactly as pytorch-fid does (see `dcgan_jax/eval/inception.py`). Bad input is one line and exit status 2.
"""

import sys
from typing import Optional, Sequence

import numpy as np

from dcgan_jax import errors
from dcgan_jax.eval import inception
from dcgan_jax.eval import scores


def _parser() -> errors.ArgumentParser:
  parser = errors.ArgumentParser(prog='python -m dcgan_jax.inception', description=__doc__.splitlines()[0])
  parser.add_argument('--weights', help=f'{inception.EXPECTED_FILE} or its converted .npz.')
  parser.add_argument('--images', help='uint8 images .npy [N, H, W, 3|1] or [N, H, W], or an image folder.')
  parser.add_argument('--out', required=True, help='Features .npy (float32 [N, 2048]), or with --convert the .npz.')
  parser.add_argument('--convert', help='A .pth state dict to convert to the .npz --out (needs torch).')
  parser.add_argument('--batch_size', type=int, default=inception.DEFAULT_BATCH_SIZE,
                      help='Images per compiled batch (the features do not depend on it).')
  return parser


def features(weights_path: str, images_path: str, out: str, batch_size: int) -> np.ndarray:
  """Writes the features of the images at `images_path` to `out` (.npy) and returns them, float32 [N, 2048]."""
  if not out.endswith('.npy'):
    raise errors.ConfigError(f'--out={out} must end in .npy')
  from dcgan_jax import sample  # pylint: disable=g-import-not-at-top
  sample.check_writable(out)
  if scores.source_kind(images_path) == 'run':
    raise errors.ConfigError(f'--images={images_path} is a training run directory; pass a .npy or an image folder')
  weights = inception.load_weights(weights_path)
  images, description = scores.load_images(images_path)
  for line in scores.protocol(weights, [('images', images, description)]):
    print(line)
  result = inception.extract_features(weights, images, batch_size)
  np.save(out, result)
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command; `argv` without the program name (None: sys.argv[1:]). Returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    if args.convert:
      if args.weights or args.images:
        raise errors.ConfigError('--convert takes only --out (the .npz to write), not --weights or --images')
      weights = inception.convert(args.convert, args.out)
      print(f'wrote {args.out}: {weights.describe()}')
    else:
      if not args.weights or not args.images:
        raise errors.ConfigError('pass --weights and --images (or --convert=IN.pth to convert weights)')
      result = features(args.weights, args.images, args.out, args.batch_size)
      print(f'wrote {args.out}: float32 {list(result.shape)}')
  except errors.UserError as e:
    print(f'Error: {e}', file=sys.stderr)
    return errors.USAGE_EXIT_CODE
  return 0


if __name__ == '__main__':
  sys.exit(main())
