"""Paper-comparable FID and KID between two image sets, in the feature space of pytorch-fid's Inception.

  python -m dcgan_jax.fid --weights=W --real=A --fake=B [--num_fake=N] [--batch_size=50]

W is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` or its converted `.npz` (`python -m dcgan_jax.inception
--convert`). A and B are each a uint8 image array (.npy [N, H, W, 3|1] or [N, H, W]), an image folder, or (B) a
training run's workdir, sampled --num_fake times (default: as many as A has) from its best checkpoint. The command
prints the protocol (feature network, weights sha256, image counts, resize, KID estimator) and, as its last line,
`FID <value> KID <mean> ± <standard error>`. Bad input is one line and exit status 2.
"""

import sys
from typing import Optional, Sequence

from dcgan_jax import errors
from dcgan_jax.eval import inception
from dcgan_jax.eval import scores


def _parser() -> errors.ArgumentParser:
  parser = errors.ArgumentParser(prog='python -m dcgan_jax.fid', description=__doc__.splitlines()[0])
  parser.add_argument('--weights', required=True, help=f'{inception.EXPECTED_FILE} or its converted .npz.')
  parser.add_argument('--real', required=True, help='Real images: a uint8 .npy or an image folder.')
  parser.add_argument('--fake', required=True, help='Generated images: a uint8 .npy, an image folder or a workdir.')
  parser.add_argument('--num_fake', type=int, default=0, help='Samples drawn from a workdir (0: as many as real).')
  parser.add_argument('--seed', type=int, default=0, help='Noise seed of the samples drawn from a workdir.')
  parser.add_argument('--batch_size', type=int, default=inception.DEFAULT_BATCH_SIZE,
                      help='Images per compiled batch (the features do not depend on it).')
  parser.add_argument('--kid_subsets', type=int, default=scores.KID_SUBSETS, help='KID: number of subsets.')
  parser.add_argument('--kid_subset_size', type=int, default=scores.KID_SUBSET_SIZE,
                      help='KID: subset size (capped by the smaller set).')
  return parser


def run(args) -> tuple[float, float, float]:
  """Prints the protocol and the result line; returns `(fid, kid mean, kid standard error)`."""
  if args.kid_subsets < 1 or args.kid_subset_size < 2:
    raise errors.ConfigError(f'--kid_subsets={args.kid_subsets} must be >= 1 and --kid_subset_size='
                             f'{args.kid_subset_size} >= 2')
  if scores.source_kind(args.real) == 'run':
    raise errors.ConfigError(f'--real={args.real} is a training run directory; pass real images (.npy or a folder)')
  scores.source_kind(args.fake)  # Both checked before the work.
  weights = inception.load_weights(args.weights)
  real, real_description = scores.load_images(args.real)
  fake, fake_description = scores.load_images(args.fake, args.num_fake or len(real), args.seed)
  for name, images in (('--real', real), ('--fake', fake)):
    if len(images) < 2:
      raise errors.DataError(f'{name} has {len(images)} image; FID and KID need at least 2')
  for line in scores.protocol(weights, [('real', real, real_description), ('fake', fake, fake_description)]):
    print(line, flush=True)
  real_features = inception.extract_features(weights, real, args.batch_size)
  fake_features = inception.extract_features(weights, fake, args.batch_size)
  fid, kid, kid_line = scores.fid_kid(real_features, fake_features, args.kid_subsets, args.kid_subset_size)
  print(kid_line)
  print(scores.result_line(fid, kid))
  return fid, kid.mean, kid.stderr


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command; `argv` without the program name (None: sys.argv[1:]). Returns the exit status."""
  args = _parser().parse_args(argv)
  try:
    run(args)
  except errors.UserError as e:
    print(f'Error: {e}', file=sys.stderr)
    return errors.USAGE_EXIT_CODE
  return 0


if __name__ == '__main__':
  sys.exit(main())
