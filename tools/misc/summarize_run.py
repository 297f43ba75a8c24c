"""Print what a training run learned: loss at the start and end, and the last evaluation.

    python tools/misc/summarize_run.py WORK_DIR
"""
import argparse
import glob
import json
import os.path as osp
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('work_dir')
    args = parser.parse_args()
    logs = sorted(glob.glob(osp.join(args.work_dir, '*', 'vis_data', 'scalars.json')))
    if not logs:
        sys.exit(f'no scalars.json under {args.work_dir}/*/vis_data: did the run start?')
    records = [json.loads(line) for log in logs for line in open(log) if line.strip()]
    train = [r for r in records if 'loss' in r]
    evals = [r for r in records if 'loss' not in r and any('/' in k for k in r)]
    if not train:
        sys.exit('no training losses logged')
    k = max(1, len(train) // 10)
    first = sum(r['loss'] for r in train[:k]) / k
    last = sum(r['loss'] for r in train[-k:]) / k
    print(f'training loss: {first:.3f} (mean of first {k} logs) -> {last:.3f} (mean of last {k}), '
          f'{train[-1].get("iter", train[-1].get("step"))} iterations')
    if evals:
        metrics = {key: v for key, v in evals[-1].items() if '/' in key}
        print('last evaluation: ' + ', '.join(f'{key} {v:.3f}' for key, v in metrics.items()
                                               if isinstance(v, (int, float))))
    if last >= first:
        sys.exit('the loss did not fall')


if __name__ == '__main__':
    main()
