"""Exports an MNIST-format IDX split as a folder of PNG files, to try the `folder` data source on real images.

  python scripts/export_png.py --idx_dir=/usr/share/datasets/fashion-mnist --split=train --out=/tmp/fashion_png \
      [--limit=20000] [--rgb]

`--rgb` writes 3-channel files (the gray value in each channel), as photos would be.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dcgan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top,wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--idx_dir', required=True)
  parser.add_argument('--split', default='train')
  parser.add_argument('--out', required=True)
  parser.add_argument('--limit', type=int, default=0, help='export at most this many images (0: all)')
  parser.add_argument('--rgb', action='store_true')
  args = parser.parse_args()
  images = input_pipeline.read_idx(input_pipeline.find_idx_images(args.idx_dir, args.split))
  if args.limit:
    images = images[:args.limit]
  os.makedirs(args.out, exist_ok=True)
  for i, image in enumerate(images):
    picture = np.repeat(image[..., None], 3, axis=-1) if args.rgb else image
    # Sub-folders of 1000: the folder source reads recursively, and file browsers stay usable.
    sub = os.path.join(args.out, f'{i // 1000:03d}')
    os.makedirs(sub, exist_ok=True)
    Image.fromarray(picture).save(os.path.join(sub, f'{i:06d}.png'))
  print(f'wrote {len(images)} images to {args.out}')


if __name__ == '__main__':
  main()
