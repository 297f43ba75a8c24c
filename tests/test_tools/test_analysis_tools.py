"""The analysis tools' command lines: FLOPs with --shape, attention and backbone benchmarks."""
import re
import subprocess
import sys

from ..conftest import REPO, run_env


def _run(args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=run_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout


def test_get_flops_with_shape():
    out = _run(['tools/analysis_tools/get_flops.py', 'configs/dilateformer/dilateformer-t_8xb128_in1k.py',
                '--shape', '224'])
    assert 'input shape: 224x224' in out
    assert 'params 17.24 M, FLOPs 3.18 G' in out
    out = _run(['tools/analysis_tools/get_flops.py', 'configs/dilateformer/dilateformer-t_8xb128_in1k.py',
                '--shape', '112', '160'])
    flops = float(re.search(r'model: +params [\d.]+ M, FLOPs ([\d.]+) G', out).group(1))
    assert 0.8 < flops < 3.18  # a smaller input costs less


def test_attention_benchmark_reports_both_forms_and_ratios():
    out = _run(['tools/analysis_tools/benchmark_attention.py', '--size', '24', '40', '--repeat', '1'])
    assert 'msda_reference (unfold)' in out and 'msda (ours)' in out
    assert len(re.findall(r'[\d.]+x faster', out)) == 2 and 'x of reference' in out


def test_backbone_benchmark_runs_ours_next_to_mmdet_swin():
    out = _run(['tools/analysis_tools/benchmark_backbones.py', '--models', 'dilateformer-t', 'swin-t',
                '--shape', '64', '96', '--repeat', '1'])
    rows = [line for line in out.splitlines() if line.startswith(('dilateformer-t', 'swin-t'))]
    assert len(rows) == 2 and rows[1].split('|')[3].strip() == '1.00'
