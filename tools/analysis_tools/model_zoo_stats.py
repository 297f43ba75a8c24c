"""The measured params/FLOPs columns of a backbone's README, as a markdown table.

    python tools/analysis_tools/model_zoo_stats.py configs/dilateformer

Every config in the folder whose name has a task and variant is counted at its task's
conventional shape (detection 1280x800, segmentation 512x2048, classification 224x224). The last
column is the backbone's share spent in token-to-token products (q k^T, attn v), which module-hook
counters (mmcv's get_model_complexity_info, used by mm* 0.x/2.x papers) do not see.
"""
import argparse
import glob
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import Config  # noqa: E402

import mmvit_ext  # noqa: E402,F401
from mmvit_ext.analysis import config_complexity  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('folder')
    parser.add_argument('--pattern', default='*-[tsmb]*_*.py', help='config file glob')
    args = parser.parse_args()
    print('| config | input (HxW) | params (M) | FLOPs (G) | backbone FLOPs (G) '
          '| of which attention products (G) |')
    print('|---|---|---|---|---|---|')
    for path in sorted(glob.glob(osp.join(args.folder, args.pattern))):
        r = config_complexity(Config.fromfile(path))
        print(f'| {osp.basename(path)} | {r["shape"][0]}x{r["shape"][1]} | {r["params"] / 1e6:.2f} '
              f'| {r["flops"] / 1e9:.1f} | {r["backbone_flops"] / 1e9:.1f} '
              f'| {r["backbone_attention_flops"] / 1e9:.1f} |', flush=True)


if __name__ == '__main__':
    from mmvit_ext.utils.errors import one_line_refusals
    with one_line_refusals():
        main()
