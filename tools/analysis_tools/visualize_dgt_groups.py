"""Draw the query groups of a DG-Attention block and the keys one group selected, over an image.

    python tools/analysis_tools/visualize_dgt_groups.py IMAGE OUT_DIR
        [--config CONFIG | --arch tiny|small|base] [--checkpoint CKPT]
        [--stage 0] [--block 0] [--head 0] [--group largest|N] [--short-side 448]

Writes ``stage{s}_block{b}_head{h}_groups.png`` (every token in its group's colour; groups are
k-means clusters of that head's queries) and ``stage{s}_block{b}_head{h}_group{g}_keys.png`` (the
group's queries tinted in its colour, the top-k keys it attends to in white). CKPT: a DGT
classifier/detector/segmentor checkpoint (its ``backbone.`` part). Without one the weights are
random, which shows the mechanics only. Stages and blocks count from 0.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import numpy as np  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('image')
    p.add_argument('out_dir')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--config', help='a config whose model (or model.backbone) is DGT')
    src.add_argument('--arch', default='tiny', help='DGT arch when no config is given')
    p.add_argument('--checkpoint', help='weights for the backbone')
    p.add_argument('--stage', type=int, default=0)
    p.add_argument('--block', type=int, default=0)
    p.add_argument('--head', type=int, default=0)
    p.add_argument('--group', default='largest', help="group whose keys to draw, or 'largest'")
    p.add_argument('--short-side', type=int, default=448,
                   help='resize the image so its short side is this (0 keeps it)')
    args = p.parse_args()

    import cv2

    import mmvit_ext  # noqa: F401  (registers the models)
    from mmvit_ext.analysis.dgt_groups import (collect_routing, draw_group_keys, draw_groups,
                                               group_legend)
    from mmvit_ext.analysis.vis_inputs import (build_vis_backbone, load_image_rgb,
                                               mark_random_weights)
    try:
        rgb = load_image_rgb(args.image, args.short_side)
    except ValueError as e:
        sys.exit(f'error: {e}')
    try:
        backbone = build_vis_backbone('DGT', args.config, args.arch, args.checkpoint)
        r = collect_routing(backbone, rgb, args.stage, args.block, args.head)
    except ValueError as e:
        sys.exit(f'error: {e}')
    groups, keys = r['groups'], r['keys']
    sizes = np.bincount(groups.ravel(), minlength=keys.shape[0])
    if args.group == 'largest':
        group = int(sizes.argmax())
    else:
        group = int(args.group)
        if not 0 <= group < keys.shape[0]:
            sys.exit(f'error: --group must be in [0, {keys.shape[0] - 1}] or largest')
    name = f'stage{args.stage}_block{args.block}_head{args.head}'
    h, w = r['grid']
    os.makedirs(args.out_dir, exist_ok=True)
    honest = (lambda img: img) if args.checkpoint else mark_random_weights
    groups_img = group_legend(honest(draw_groups(
        rgb, groups, f'{name}: {keys.shape[0]} groups on {h}x{w} tokens')), keys.shape[0])
    keys_img = honest(draw_group_keys(rgb, groups, keys, group, f'group {group}: '
                                      f'{sizes[group]} queries (tinted), {keys.shape[1]} keys '
                                      f'(white)'))
    cv2.imwrite(osp.join(args.out_dir, f'{name}_groups.png'), groups_img[..., ::-1])
    cv2.imwrite(osp.join(args.out_dir, f'{name}_group{group}_keys.png'), keys_img[..., ::-1])
    print(f'{name}: {h}x{w} tokens, group sizes {sizes.tolist()}, {keys.shape[1]} keys per group')
    print(f'wrote {name}_groups.png and {name}_group{group}_keys.png to {args.out_dir}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
