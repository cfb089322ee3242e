"""Write a tiny synthetic dataset in a real OpenMMLab on-disk format.

Example::

    python tools/misc/make_tiny_data.py coco data/tiny_coco --seed 0
"""
import argparse
import pprint

from mmkd_channel.testing import (make_cifar100, make_cityscapes,
                                  make_coco_detection, make_digits_imagenet,
                                  make_imagenet)

MAKERS = {
    'coco': make_coco_detection,
    'cityscapes': make_cityscapes,
    'imagenet': make_imagenet,
    'cifar100': make_cifar100,
    'digits': make_digits_imagenet,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=sorted(MAKERS), help='dataset kind')
    parser.add_argument('out_dir', help='output directory (data_root)')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    pprint.pprint(MAKERS[args.kind](args.out_dir, seed=args.seed))


if __name__ == '__main__':
    main()
