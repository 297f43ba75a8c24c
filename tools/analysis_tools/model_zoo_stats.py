"""The measured params/FLOPs columns of a backbone's README, as a markdown table.

    python tools/analysis_tools/model_zoo_stats.py configs/dilateformer

Every config in the folder whose name has a task and variant is counted at its task's
conventional shape (detection 1280x800, segmentation 512x2048, classification 224x224). The last
column is the backbone's share spent in token-to-token products (q k^T, attn v), which module-hook
counters (mmcv's get_model_complexity_info, used by mm* 0.x/2.x papers) do not see.

``--metafile`` also writes the numbers into the folder's ``metafile.yml`` (``Parameters``,
``FLOPs`` and ``Input Size`` of each counted config's entry; the rest of the file, comments
included, stays as it is): the model zoo page of the manual reads them from there.
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
    parser.add_argument('--metafile', action='store_true',
                        help="write Parameters / FLOPs / Input Size into the folder's metafile.yml")
    args = parser.parse_args()
    counted = {}
    print('| config | input (HxW) | params (M) | FLOPs (G) | backbone FLOPs (G) '
          '| of which attention products (G) |')
    print('|---|---|---|---|---|---|')
    for path in sorted(glob.glob(osp.join(args.folder, args.pattern))):
        r = config_complexity(Config.fromfile(path))
        counted[osp.splitext(osp.basename(path))[0]] = r
        print(f'| {osp.basename(path)} | {r["shape"][0]}x{r["shape"][1]} | {r["params"] / 1e6:.2f} '
              f'| {r["flops"] / 1e9:.1f} | {r["backbone_flops"] / 1e9:.1f} '
              f'| {r["backbone_attention_flops"] / 1e9:.1f} |', flush=True)
    if args.metafile:
        path = osp.join(args.folder, 'metafile.yml')
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(write_complexity(text, counted))
        print(f'wrote the params and FLOPs of {len(counted)} configs into {path}')


def write_complexity(text: str, counted: dict) -> str:
    """``text`` (a metafile) with each counted model's ``Parameters`` / ``FLOPs`` /
    ``Input Size`` lines in its ``Metadata`` (replaced where present, else added first)."""
    import re
    out, name = [], None
    keys = ('Parameters', 'FLOPs', 'Input Size')
    for line in text.splitlines(keepends=True):
        m = re.match(r'\s*- Name: (\S+)', line)
        if m:
            name = m.group(1)
        if name in counted and re.match(r'\s+(Parameters|FLOPs|Input Size):', line):
            continue
        out.append(line)
        if name in counted and re.match(r'\s+Metadata:\s*$', line):
            indent = ' ' * (len(line) - len(line.lstrip()) + 2)
            r = counted[name]
            values = (r['params'], r['flops'], f'{r["shape"][0]}x{r["shape"][1]}')
            out += [f'{indent}{k}: {v}\n' for k, v in zip(keys, values)]
    return ''.join(out)


if __name__ == '__main__':
    from mmvit_ext.utils.cli import one_line_refusals
    with one_line_refusals():
        main()
