"""Parameters and FLOPs (multiply-adds, the papers' "FLOPs") of a config's model at a given shape.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options k=v ...]

CONFIG may also name a config of an installed OpenMMLab package, e.g.
``mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py`` (for baselines such as Swin-T).

Default shapes follow the community convention: detection 1280x800 (H=800, W=1280), segmentation
512x2048, classification 224x224. Attention is counted (see mmvit_ext/analysis/complexity.py);
element-wise ops (softmax, GELU, add) are not, as in fvcore. Weights are not loaded. Unlike mmdet's
3.x tool, no dataset is needed.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config, DictAction  # noqa: E402

import mmvit_ext  # noqa: E402,F401
from mmvit_ext.analysis import config_complexity  # noqa: E402
from mmvit_ext.apis.config_path import resolve_config_path  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description='Count params and FLOPs (MACs)')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] (one value: square)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    if args.shape and len(args.shape) not in (1, 2):
        parser.error('--shape takes H or H W')
    shape = (args.shape * 2 if len(args.shape) == 1 else args.shape) if args.shape else None
    try:
        cfg = Config.fromfile(resolve_config_path(args.config))
    except FileNotFoundError as e:
        sys.exit(f'error: {e}')
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    r = config_complexity(cfg, shape)
    line = '=' * 60
    print(f'{line}\nconfig: {args.config}\ninput shape: {r["shape"][0]}x{r["shape"][1]} (HxW)\n'
          f'model:    params {r["params"] / 1e6:.2f} M, FLOPs {r["flops"] / 1e9:.2f} G\n'
          f'backbone: params {r["backbone_params"] / 1e6:.2f} M, '
          f'FLOPs {r["backbone_flops"] / 1e9:.2f} G '
          f'(attention products {r["backbone_attention_flops"] / 1e9:.2f} G)\n'
          f'FLOPs are multiply-adds, attention included; not counted: '
          f'{", ".join(r["unsupported"]) or "nothing"}\n{line}')


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
