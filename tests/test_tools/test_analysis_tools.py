"""The analysis tools' command lines: FLOPs with --shape, attention and backbone benchmarks."""
import re
import subprocess
import sys

import pytest

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


def test_get_flops_reads_configs_of_installed_packages():
    """Baselines such as mmdet's Swin-T are measured with the same counter."""
    out = _run(['tools/analysis_tools/get_flops.py',
                'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py', '--shape', '224'])
    assert re.search(r'backbone: params 27\.5\d M, FLOPs 4\.[45]\d G', out), out
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/get_flops.py',
                           'mmdet::swin/no-such-config.py'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True)
    assert proc.returncode != 0 and 'no such config in the installed mmdet' in proc.stderr


def test_each_benchmark_case_runs_in_a_fresh_process_and_failures_say_why():
    """Cases fork from a server that imported the modules once; each reports its own peak (a
    second identical case in the same process would find ru_maxrss already raised)."""
    from mmvit_ext.analysis.benchmark import run_case_in_subprocess
    case = dict(kind='attention', op='msda_reference', mode='fwd', size=[96, 96], channels=48,
                heads=3, batch=1, device='cpu', threads=1, repeat=1, warmup=0)
    first, second = (run_case_in_subprocess('mmvit_ext.analysis.bench_cases', case)
                     for _ in range(2))
    assert first['op'] == 'msda_reference' and first['time_ms'] > 0 and first['peak_mb'] > 5
    assert second['peak_mb'] > 0.5 * first['peak_mb'], (first, second)
    with pytest.raises(RuntimeError, match=r"(?s)failed:.*KeyError: 'kind'"):
        run_case_in_subprocess('mmvit_ext.analysis.bench_cases', dict(device='cpu'))
    with pytest.raises(RuntimeError, match='exit code 3'):
        run_case_in_subprocess('tests.test_tools.exit_case', dict(code=3))


def test_attention_benchmark_reports_both_forms_and_ratios():
    out = _run(['tools/analysis_tools/benchmark_attention.py', '--size', '24', '40', '--repeat', '1'])
    assert 'msda_reference (unfold)' in out and 'msda (ours)' in out
    assert len(re.findall(r'[\d.]+x faster', out)) == 2 and 'x of reference' in out


def test_natten_side_by_side_is_refused_in_one_line_where_natten_cannot_run():
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/benchmark_attention.py',
                           '--natten', '--size', '24', '40'], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert '--natten needs --device cuda and the natten package' in proc.stderr
    assert 'Traceback' not in proc.stderr
    # and in a benchmark case run by hand on the CPU: the case refuses before timing anything
    from mmvit_ext.analysis.bench_cases import run_child
    from mmvit_ext.errors import ConfigValueError
    with pytest.raises(ConfigValueError, match='NATTEN does not run here; it needs CUDA'):
        run_child(dict(kind='attention', op='msda_natten', mode='fwd', size=[8, 8], channels=24,
                       heads=3, batch=1, device='cpu', repeat=1))


def test_backbone_benchmark_runs_ours_next_to_mmdet_swin_per_flop(tmp_path):
    md = tmp_path / 'table.md'
    out = _run(['tools/analysis_tools/benchmark_backbones.py', '--models', 'dgt-t', 'swin-t',
                '--shape', '64', '96', '--steps', '2', '--warmup', '0', '--out-json',
                str(tmp_path / 'rows.json'), '--out-md', str(md)], timeout=600)
    assert 'median of 2 steps after 0 warm-up' in out
    assert 'malloc settings' in out.splitlines()[0] or 'MALLOC_' in out.splitlines()[0]
    header = [c.strip() for c in out.splitlines()[1].split('|')]
    rows = [dict(zip(header, (c.strip() for c in line.split('|'))))
            for line in out.splitlines()[3:]]
    assert [(r['backbone'], r['mode']) for r in rows] == [
        ('swin-t', 'fwd'), ('dgt-t', 'fwd'), ('swin-t', 'fwdbwd'), ('dgt-t', 'fwdbwd')]
    for r in rows:
        time_ratio, flop_ratio = float(r['time / Swin-T']), float(r['FLOPs / Swin-T'])
        # the shown ratios are rounded to 0.005 each: that much error, carried through t / f
        rounding = 0.005 + 0.005 / flop_ratio + 0.005 * time_ratio / flop_ratio**2
        assert abs(float(r['per-FLOP vs Swin-T']) - time_ratio / flop_ratio) <= rounding + 1e-9
        assert (r['saved MB'] == '-') == (r['mode'] == 'fwd')
    assert rows[0]['time / Swin-T'] == '1.00' and float(rows[3]['saved MB']) > 0
    import json
    saved = json.loads((tmp_path / 'rows.json').read_text())['rows']
    assert len(saved) == 4 and all(r['flops'] > 0 for r in saved)
    assert md.read_text().count('\n| ') == 5  # header + 4 rows


def test_the_benchmark_setting_names_the_allocator(monkeypatch):
    from mmvit_ext.analysis.benchmark import allocator_setting
    import os
    for name in [k for k in os.environ if k.startswith('MALLOC_')] + ['LD_PRELOAD']:
        monkeypatch.delenv(name, raising=False)
    assert allocator_setting() == 'default malloc settings'
    monkeypatch.setenv('MALLOC_TRIM_THRESHOLD_', '4294967296')
    monkeypatch.setenv('MALLOC_MMAP_THRESHOLD_', '1073741824')
    assert allocator_setting() == ('MALLOC_MMAP_THRESHOLD_=1073741824, '
                                   'MALLOC_TRIM_THRESHOLD_=4294967296')

def test_training_benchmark_runs_the_training_path_next_to_mmdet_swin(tmp_path):
    out = _run(['tools/analysis_tools/benchmark_train.py', 'configs/qna/mask-rcnn_qnavit-t_fpn_1x_coco.py',
                'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', '--iters', '2', '--warmup',
                '1', '--scale', '200', '120', '--data', str(tmp_path / 'bench'), '--out-json',
                str(tmp_path / 'train.json')], timeout=900)
    assert 'Mask R-CNN training, batch 1, fp32, images resized to 200x120' in out
    import json
    rows = json.loads((tmp_path / 'train.json').read_text())['rows']
    assert [len(r['iter_times']) for r in rows] == [3, 3]  # 1 warm-up + 2 timed, per config
    assert all(r['median_s'] > 0 and r['peak_mb'] > 0 for r in rows)
    assert re.search(r'mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py \| [\d.]+ +\| \d+ +\| 1.00', out)


def test_token_budget_follows_the_merge_groups():
    import torch
    from mmvit_ext.analysis.significance import token_budget
    from mmvit_ext.attention.sg import DEFAULT_MERGE_GROUPS
    sig = torch.rand(2, 56, 56)
    budget = token_budget(sig, DEFAULT_MERGE_GROUPS[0])
    for b in range(2):
        values, counts = budget[b].unique(return_counts=True)
        assert dict(zip((1 / values).round().int().tolist(), counts.tolist())) == \
            {196: 784, 56: 1568, 28: 784}
        # the most significant token is in the finest group, the least in the coarsest
        flat, s = budget[b].flatten(), sig[b].flatten()
        assert flat[s.argmax()] == 1 / 28 and flat[s.argmin()] == 1 / 196


def test_visualize_significance_writes_pngs_over_the_image(tmp_path):
    import cv2
    import numpy as np
    import torch
    from mmvit_ext.models.backbones import SGFormer
    arch = dict(embed_dims=(16, 32, 64, 128), depths=(2, 2, 2, 1), num_heads=(2, 2, 4, 4))
    ckpt = tmp_path / 'sg.pth'
    torch.manual_seed(0)
    torch.save({'backbone.' + k: v for k, v in SGFormer(arch).state_dict().items()}, ckpt)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'model = dict(backbone=dict(type="SGFormer", arch={arch!r}))\n')
    img = np.zeros((120, 90, 3), np.uint8)
    cv2.circle(img, (45, 60), 25, (0, 0, 255), -1)
    cv2.imwrite(str(tmp_path / 'img.png'), img)
    out_dir = tmp_path / 'vis'
    out = _run(['tools/analysis_tools/visualize_significance.py', str(tmp_path / 'img.png'),
                str(out_dir), '--config', str(cfg), '--checkpoint', str(ckpt),
                '--short-side', '0'])
    assert 'wrote 7 PNG files' in out and 'RANDOM WEIGHTS' not in out
    for stage in (1, 2, 3):
        for kind in ('significance', 'budget'):
            png = cv2.imread(str(out_dir / f'stage{stage}_block0_{kind}.png'))
            assert png.shape == (120, 90 + 64, 3)  # the map and its colour bar
            assert (png[:, 90:] == 255).mean() > 0.5  # the bar's white panel with labels
    assert cv2.imread(str(out_dir / 'summary.png')).shape == (360, 90 + 2 * 154, 3)
    assert re.search(r'stage1_block0: S in \[[\d.e-]+, [\d.e-]+\], mean', out)
    # no checkpoint: said on the console and in every picture (a red banner at the bottom)
    out = _run(['tools/analysis_tools/visualize_significance.py', str(tmp_path / 'img.png'),
                str(tmp_path / 'random'), '--config', str(cfg), '--short-side', '0'])
    assert 'warning: RANDOM WEIGHTS: no checkpoint given, nothing learned is shown' in out
    png = cv2.imread(str(tmp_path / 'random' / 'stage1_block0_significance.png'))[..., ::-1]
    banner = png[-4:, :90].reshape(-1, 3).astype(int)
    assert ((banner[:, 0] > 120) & (banner[:, 2] < 100)).mean() > 0.5, banner[:5]
    # a large image: the summary stays within 1600 x 2400
    cv2.imwrite(str(tmp_path / 'big.png'), np.zeros((900, 1200, 3), np.uint8))
    _run(['tools/analysis_tools/visualize_significance.py', str(tmp_path / 'big.png'),
          str(tmp_path / 'big'), '--config', str(cfg), '--short-side', '900'])
    h, w = cv2.imread(str(tmp_path / 'big' / 'summary.png')).shape[:2]
    assert w <= 1600 and h <= 2400, (h, w)

    proc = subprocess.run([sys.executable, 'tools/analysis_tools/visualize_significance.py',
                           str(tmp_path / 'missing.jpg'), str(out_dir)], cwd=REPO,
                          env=run_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and 'missing.jpg not found' in proc.stderr


def test_attention_benchmark_runs_the_sgformer_blocks():
    for op in ('sg_hybrid', 'sg_guided'):
        out = _run(['tools/analysis_tools/benchmark_attention.py', '--op', op, '--size', '20', '30',
                    '--channels', '16', '--heads', '2', '--stage', '1', '--repeat', '1',
                    '--mode', 'fwdbwd'])
        assert f'{op}_reference (loops, explicit softmax)' in out and f'{op} (ours)' in out
        assert len(re.findall(r'[\d.]+x faster', out)) == 1 and '| fwd ' not in out


def test_get_flops_reports_the_attention_share():
    out = _run(['tools/analysis_tools/get_flops.py', 'configs/sgformer/sgformer-s_8xb128_in1k.py'])
    assert 'params 22.55 M, FLOPs 4.82 G' in out
    share = float(re.search(r'attention products ([\d.]+) G', out).group(1))
    assert 0.1 < share < 0.5  # q k^T and attn v of all blocks at 224: 0.25 G


@pytest.mark.parametrize('mode', ['fwd', 'fwdbwd'])
def test_profile_backbone_groups_operator_time(mode):
    out = _run(['tools/analysis_tools/profile_backbone.py', 'sgformer-s', '--shape', '64', '64',
                '--mode', mode])
    shares = dict(re.findall(r'^  ([a-z/-]+) +([\d.]+)%', out, re.M))
    assert {'attention', 'linear', 'conv', 'gather/scatter/index', 'norm'} <= set(shares)
    assert abs(sum(float(v) for v in shares.values()) - 100) < 0.5


def test_profile_backbone_floor_against_swin():
    out = _run(['tools/analysis_tools/profile_backbone.py', 'dgt-t', '--shape', '64', '64',
                '--baseline', 'swin-t', '--top', '3'])
    assert out.count('s of operator time') == 2  # dgt-t, then mmdet's Swin-T
    m = re.search(r'per FLOP vs swin-t \(operator time\): ([\d.]+); floor ([\d.]+) '
                  r'\(FLOPs ([\d.]+)x; non-matmul time (\d+)% here, (\d+)% in swin-t\)', out)
    assert m, out[-2000:]
    measured, floor, ratio = (float(v) for v in m.groups()[:3])
    assert 0 < floor and 0 < ratio and measured > 0


def test_attention_benchmark_compares_qna_with_unfold_local_attention():
    out = _run(['tools/analysis_tools/benchmark_attention.py', '--op', 'qna', '--size', '16', '24',
                '--channels', '16', '--heads', '2', '--kernels', '3', '7', '--mode', 'fwd',
                '--repeat', '1', '--unfold-products', 'matmul'])
    rows = [line for line in out.splitlines() if re.match(r'^(3|7) +\| fwd', line)]
    assert len(rows) == 2 and all('x less' in r and r.count('x') >= 2 for r in rows)
    assert 'unfold products: matmul' in out


def test_visualize_dgt_groups_draws_one_colour_per_group_and_the_selected_keys(tmp_path):
    import cv2
    import numpy as np
    import torch

    from mmvit_ext.analysis.dgt_groups import collect_routing, draw_groups, group_colours
    from mmvit_ext.models.backbones import DGT
    arch = dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                num_groups=(4, 4, 2, 1), topk=(16, 16, 8, None), stem_channels=8)
    ckpt = tmp_path / 'dgt.pth'
    torch.manual_seed(0)
    torch.save({'backbone.' + k: v for k, v in DGT(arch).state_dict().items()}, ckpt)
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(f'model = dict(backbone=dict(type="DGT", arch={arch!r}))\n')
    img = np.zeros((96, 128, 3), np.uint8)
    img[:, 64:] = (0, 0, 255)
    cv2.imwrite(str(tmp_path / 'img.png'), img)
    out_dir = tmp_path / 'vis'
    out = _run(['tools/analysis_tools/visualize_dgt_groups.py', str(tmp_path / 'img.png'),
                str(out_dir), '--config', str(cfg), '--checkpoint', str(ckpt), '--stage', '0',
                '--group', '1', '--short-side', '0'])
    assert 'stage0_block0_head0: 24x32 tokens' in out and '16 keys per group' in out
    groups_png = cv2.imread(str(out_dir / 'stage0_block0_head0_groups.png'))
    assert groups_png.shape == (96, 128 + 64, 3)  # the map and its legend
    legend = groups_png[..., ::-1][:, 128 + 4:128 + 16]
    colours4 = group_colours(4)
    assert all((legend == c).all(-1).any() for c in colours4)  # a swatch per group
    keys = cv2.imread(str(out_dir / 'stage0_block0_head0_group1_keys.png'))
    assert keys.shape == (96, 128, 3)
    # the drawing: every token's 4x4 cell has exactly its group's colour (alpha 1)
    backbone = DGT(arch, out_indices=(3, ))
    r = collect_routing(backbone, img[..., ::-1].copy(), stage=0, block=0)
    drawn = draw_groups(np.zeros_like(img), r['groups'], alpha=1.)
    colours = group_colours(int(r['groups'].max()) + 1)
    assert np.array_equal(drawn[4 * 5 + 1, 4 * 7 + 2], colours[r['groups'][5, 7]])
    assert r['keys'].shape == (4, 16)
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/visualize_dgt_groups.py',
                           str(tmp_path / 'img.png'), str(out_dir), '--config', str(cfg),
                           '--block', '3'], cwd=REPO, env=run_env(), capture_output=True,
                          text=True)
    assert proc.returncode != 0 and 'stage 0 has 1 blocks, got block 3' in proc.stderr
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/visualize_significance.py',
                           str(tmp_path / 'img.png'), str(out_dir), '--config', str(cfg)],
                          cwd=REPO, env=run_env(), capture_output=True, text=True)
    assert proc.returncode != 0 and "is 'DGT', not SGFormer" in proc.stderr


def test_attention_benchmark_compares_dga_with_global_and_the_dense_reference():
    out = _run(['tools/analysis_tools/benchmark_attention.py', '--op', 'dga', '--size', '16', '24',
                '--channels', '16', '--heads', '2', '--groups', '4', '--topk', '32',
                '--mode', 'fwd', '--repeat', '1'])
    assert 'DG-Attention (ours)' in out and 'global attention (SDPA, 4096-query chunks)' in out
    assert re.search(r'dense masked reference +\| fwd +\| [\d.]+ ', out)
    assert re.search(r'of which k-means +\| fwd .*% of the forward', out)
    out = _run(['tools/analysis_tools/benchmark_attention.py', '--op', 'dga', '--size', '16', '24',
                '--channels', '16', '--heads', '2', '--mode', 'fwd', '--repeat', '1',
                '--max-reference-gb', '0.0001'])
    assert re.search(r'dense masked reference +\| fwd +\| skipped \| needs ~4 MB', out)


def test_ablation_table_on_a_tiny_budget(small_data, tmp_path):
    """The ablation bench end to end on a tiny budget and shape: a variant sized within 2%,
    timed next to mmdet's Swin-T, one seed of small-set training each; Markdown, CSV and PNG."""
    import csv
    out_dir = tmp_path / 'ablation'
    out = _run(['tools/analysis_tools/ablation_bench.py', '--budget', '0.15', '--variants',
                'msda-s12', '--shape', '64', '96', '--repeat', '3', '--threads', '1',
                '--train', '--seeds', '0', '--epochs', '1', '--data-root', small_data['coco'],
                '--out-dir', str(out_dir)],
               timeout=900)
    assert 'Attention ablation at 0.15 GFLOPs' in out and 'toy data' in out
    with open(out_dir / 'ablation.csv') as f:
        rows = list(csv.DictReader(f))
    assert [r['model'] for r in rows] == ['msda-s12', 'swin-t (mmdet)']
    for r in rows[:1]:
        assert abs(float(r['gflops_224']) / 0.15 - 1) <= 0.02, r
        assert 0 <= float(r['bbox_map']) <= 1 and 0 <= float(r['segm_map']) <= 1, r
    for r in rows:  # medians of 3 on one thread (a pytest worker's share of the 2 cores)
        assert float(r['fwd_ms']) > 0 and float(r['fwdbwd_ms']) > float(r['fwd_ms']) * 0.5, r
        assert float(r['saved_mb']) > 0 and r['peak_mb'] == '', r  # CPU: no per-call peak
    assert 4.3 < float(rows[1]['gflops_224']) < 4.7  # Swin-T, counted by the same counter
    assert (out_dir / 'ablation.png').stat().st_size > 1000
    assert '| msda-s12 |' in (out_dir / 'ablation.md').read_text()
    proc = subprocess.run([sys.executable, 'tools/analysis_tools/ablation_bench.py', '--budget',
                           '1e-6', '--variants', 'none-s12', '--out-dir', str(out_dir)],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'out of reach' in proc.stderr and 'Traceback' not in proc.stderr


def test_model_zoo_stats_writes_the_numbers_into_the_metafile_and_keeps_the_rest():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'model_zoo_stats', f'{REPO}/tools/analysis_tools/model_zoo_stats.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = ('Models:\n  - Name: a\n    Metadata:\n      Parameters: 1\n      Epochs: 12\n'
            '    # a comment\n  - Name: b\n    Metadata:\n      Epochs: 36\n')
    out = module.write_complexity(text, {'b': dict(params=5, flops=7, shape=(800, 1280)),
                                         'a': dict(params=2, flops=3, shape=(224, 224))})
    assert out == ('Models:\n  - Name: a\n    Metadata:\n      Parameters: 2\n      FLOPs: 3\n'
                   '      Input Size: 224x224\n      Epochs: 12\n    # a comment\n'
                   '  - Name: b\n    Metadata:\n      Parameters: 5\n      FLOPs: 7\n'
                   '      Input Size: 800x1280\n      Epochs: 36\n')


@pytest.mark.slow  # inductor builds each model: minutes on 2 cores
def test_backbone_benchmark_compile_column(tmp_path):
    out = _run(['tools/analysis_tools/benchmark_backbones.py', '--models', 'dilateformer-t',
                'swin-t', '--shape', '64', '96', '--steps', '2', '--warmup', '0', '--modes',
                'fwd', '--compile'], timeout=1800)
    header = [c.strip() for c in out.splitlines()[1].split('|')]
    rows = [dict(zip(header, (c.strip() for c in line.split('|'))))
            for line in out.splitlines()[3:]]
    assert [(r['backbone'], r['torch.compile']) for r in rows] == [
        ('swin-t', 'no'), ('dilateformer-t', 'no'), ('swin-t', 'yes'), ('dilateformer-t', 'yes')]
    assert rows[2]['time / Swin-T'] == '1.00'  # compiled rows against compiled Swin-T


def test_backbone_benchmark_pairs_every_model_with_the_swin_run_before_it():
    """On the CPU each ratio takes the Swin-T run right before the model (the machine's speed
    drifts over a table); on CUDA Swin-T runs first and last and both count."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'benchmark_backbones', f'{REPO}/tools/analysis_tools/benchmark_backbones.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    models = ['dgt-t', 'swin-t', 'qnavit-t']
    assert tool.run_order(models, cuda=False) == ['swin-t', 'dgt-t', 'swin-t', 'qnavit-t']
    assert tool.run_order(models, cuda=True) == ['swin-t', 'dgt-t', 'qnavit-t', 'swin-t']
    common = dict(mode='fwd', precision='fp32', compile=False)
    runs = [dict(common, model=m, device='cpu', median_ms=t)
            for m, t in [('swin-t', 100.), ('dgt-t', 150.), ('swin-t', 200.), ('qnavit-t', 50.)]]
    assert [b['median_ms'] for b in tool.baseline_runs(runs, 1)] == [100.]
    assert [b['median_ms'] for b in tool.baseline_runs(runs, 3)] == [200.]
    assert [b['median_ms'] for b in tool.baseline_runs(runs, 0)] == [100., 200.]
    cuda = [dict(r, device='cuda') for r in runs]
    assert [b['median_ms'] for b in tool.baseline_runs(cuda, 3)] == [100., 200.]
