"""Generate the built-in small datasets (COCO, ADE20K and ImageNet formats).

    python tools/misc/make_small_datasets.py [ROOT=data/small] [--only coco|ade20k|imagenet]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmvit_ext.datasets import small  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('root', nargs='?', default='data/small', help='output folder')
    parser.add_argument('--only', choices=['coco', 'ade20k', 'imagenet'])
    args = parser.parse_args()
    makers = dict(coco=small.make_small_coco, ade20k=small.make_small_ade20k,
                  imagenet=small.make_small_imagenet)
    for name, make in makers.items():
        if args.only in (None, name):
            print(f'{name}: {make(args.root)}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
