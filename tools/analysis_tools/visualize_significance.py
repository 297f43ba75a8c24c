"""Draw the significance map of every SG-Former hybrid-scale block over an image (PNG).

    python tools/analysis_tools/visualize_significance.py IMAGE OUT_DIR
        [--config CONFIG | --arch s|m|b] [--checkpoint CKPT] [--short-side 448]

Writes, per H block, ``stage{i}_block{j}_significance.png`` (the map S, JET colours: red = more
attention received) and ``stage{i}_block{j}_budget.png`` (keys per token after the next
self-guided block's merging: red = finely kept, blue = pooled coarsely), plus ``summary.png``
with all panels. CKPT may be an official SG-Former file (its EMA weights), a converted one, or a
detector/segmentor checkpoint (its ``backbone.`` part). Without a checkpoint the weights are
random, which shows the mechanics only.
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
    src.add_argument('--config', help='a config whose model (or model.backbone) is SGFormer')
    src.add_argument('--arch', default='s', help="SGFormer arch when no config is given")
    p.add_argument('--checkpoint', help='weights for the backbone (official, converted or mm*)')
    p.add_argument('--short-side', type=int, default=448,
                   help='resize the image so its short side is this (0 keeps it)')
    args = p.parse_args()

    import cv2
    import mmvit_ext  # noqa: F401  (registers the models)
    from mmvit_ext.analysis.significance import collect_significance, overlay
    from mmvit_ext.analysis.vis_inputs import (build_vis_backbone, fit_within, load_image_rgb,
                                               mark_random_weights, with_colour_bar)
    try:
        rgb = load_image_rgb(args.image, args.short_side)
        backbone = build_vis_backbone('SGFormer', args.config, args.arch, args.checkpoint)
    except ValueError as e:
        sys.exit(f'error: {e}')
    results = collect_significance(backbone, rgb)
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    honest = (lambda img: img) if args.checkpoint else mark_random_weights
    for r in results:
        name = f'stage{r["stage"] + 1}_block{r["block"]}'
        sig = r['significance']
        h, w = sig.shape
        panels = [with_colour_bar(honest(overlay(rgb, sig, f'{name} S ({h}x{w} tokens)')),
                                  f'{sig.min():.3g}', f'{sig.max():.3g}')]
        cv2.imwrite(osp.join(args.out_dir, f'{name}_significance.png'), panels[0][..., ::-1])
        if r['budget'] is not None:
            ks = sorted({round(1 / b) for b in np.unique(r['budget'])})
            panels.append(with_colour_bar(honest(overlay(
                rgb, r['budget'], f'{name} keys/token 1/' + ',1/'.join(map(str, ks)), log=True)),
                f'1/{ks[-1]} coarse', f'1/{ks[0]} fine'))
            cv2.imwrite(osp.join(args.out_dir, f'{name}_budget.png'), panels[1][..., ::-1])
        else:
            panels.append(np.zeros_like(panels[0]))
        rows.append(np.concatenate([rgb] + panels, axis=1))
        print(f'{name}: S in [{r["significance"].min():.4g}, {r["significance"].max():.4g}], '
              f'mean {r["significance"].mean():.4g}')
    # every block's row, shrunk to at most 1600 x 2400 px (the full-size panels are the files
    # above)
    summary = fit_within(np.concatenate(rows, axis=0))
    cv2.imwrite(osp.join(args.out_dir, 'summary.png'), summary[..., ::-1])
    print(f'wrote {2 * len(results) + 1} PNG files to {args.out_dir}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
