"""Export: tools/deployment/export_onnx.py for every family, backbone alone and whole Mask R-CNN
(onnxruntime against PyTorch at the export size and, with free height and width, at another),
a whole UperNet with both exporters, the export-ready pieces of ``mmvit_ext.deployment`` against
the eager model, and TorchScript trace + save + load."""
import glob
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmvit_ext.deployment import near_tie

from ..conftest import REPO, run_env

DEMOS = {
    'DilateFormer': 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py',
    'QnAViT': 'configs/_small_/mask-rcnn_qnavit-demo_fpn_small-coco.py',
    'SGFormer': 'configs/_small_/mask-rcnn_sgformer-demo_fpn_small-coco.py',
    'DGT': 'configs/_small_/mask-rcnn_dgt-demo_fpn_small-coco.py',
}
SEG_DEMO = 'configs/_small_/dilateformer-demo_upernet_small-ade20k.py'
CLS_DEMO = 'configs/_small_/dilateformer-demo_small-imagenet.py'
ROUTING = ('SGFormer', 'DGT')
LINE = re.compile(r'onnxruntime vs PyTorch at (\d+x\d+): max relative difference per output '
                  r'([^;]+); PyTorch vs itself under a 1e-05 input perturbation: ([^\n]+)')


def _export(args, tmp_path, timeout=600):
    proc = subprocess.run([sys.executable, 'tools/deployment/export_onnx.py', *args, '--out',
                           str(tmp_path / 'm.onnx')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _checks(out):
    """[(size, worst difference, PyTorch's own drift)] as the tool printed them."""
    def value(text):
        return float('inf') if text.strip() == 'shape differs' else float(text)

    return [(size, max(value(v) for v in diffs.split(', ')), value(drift))
            for size, diffs, drift in LINE.findall(out)]


def _assert_matches(out, family, sizes):
    """Within 1e-4 everywhere, except where the model routes (SG-Former, DGT, and a detector's
    RPN top-k and NMS) and PyTorch itself is as unstable at that input (a near-tie)."""
    routes = family in ROUTING or ' detector, ' in out
    rows = _checks(out)
    assert [size for size, _, _ in rows] == sizes, out
    for size, worst, drift in rows:
        if worst <= 1e-4:
            continue
        assert routes and near_tie(worst, drift), out
        assert f'routing near-tie at {size}' in out, out


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_backbone_exports_with_free_size_and_matches_pytorch(family, tmp_path):
    code, out = _export([DEMOS[family], '--backbone', '--image', 'noise', '--shape', '128', '160',
                         '--dynamic', '--check-shape', '96', '128'], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} backbone, torchscript exporter, opset 17, dynamic size)' in out
    _assert_matches(out, family, ['128x160', '96x128'])


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_whole_mask_rcnn_exports_with_free_size(family, tmp_path):
    code, out = _export([DEMOS[family], '--shape', '128', '160', '--dynamic'], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} detector, torchscript exporter, opset 17, dynamic size)' in out
    _assert_matches(out, family, ['128x160', '168x136'])
    import onnx
    graph = onnx.load(str(tmp_path / 'm.onnx')).graph
    assert [o.name for o in graph.output] == ['out0', 'out1', 'out2', 'out3']
    ops = {node.op_type for node in graph.node}
    assert {'NonMaxSuppression', 'RoiAlign'} <= ops, ops


@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
def test_whole_upernet_exports_with_free_size(exporter, tmp_path):
    code, out = _export([SEG_DEMO, '--exporter', exporter, '--shape', '128', '160', '--dynamic'],
                        tmp_path)
    assert code == 0, out[-3000:]
    assert f'(DilateFormer segmentor, {exporter} exporter' in out
    _assert_matches(out, 'DilateFormer', ['128x160', '168x136'])


def test_classifier_exports_whole_and_a_mismatch_fails(tmp_path):
    code, out = _export([CLS_DEMO, '--shape', '64', '64', '--dynamic'], tmp_path)
    assert code == 0 and '(DilateFormer classifier' in out and 'OK: within 1e-04' in out, out
    code, out = _export([CLS_DEMO, '--shape', '64', '64', '--rtol', '0'], tmp_path)
    assert code == 1 and 'error: the exported model differs from PyTorch' in out, out


def test_routing_near_tie_is_measured_and_said(tmp_path):
    """SG-Former on the small dataset's image at 168x136: the significance sort has near-ties
    (flat regions), PyTorch itself moves by ~1e-2 under 1e-5 input changes, and the tool says
    that the ONNX model is no further from PyTorch than that instead of failing or hiding it."""
    code, out = _export([DEMOS['SGFormer'], '--backbone', '--shape', '168', '136'], tmp_path)
    assert code == 0, out[-3000:]
    [(_, worst, drift)] = _checks(out)
    assert drift > 1e-3, out
    assert worst <= 1e-4 or ('routing near-tie at 168x136' in out and worst <= 2 * drift), out


@pytest.mark.slow  # ~70 s each on 2 cores: opt-in, to keep the default run's time
@pytest.mark.parametrize('family', sorted(DEMOS))
def test_whole_mask_rcnn_through_the_dynamo_exporter(family, tmp_path):
    """NMS and RoIAlign as torch operators (mmvit_ext.deploy_ops) with ONNX translations: the
    whole detector goes through torch.export with free height and width, then to ONNX."""
    code, out = _export([DEMOS[family], '--exporter', 'dynamo', '--shape', '128', '160',
                         '--dynamic'], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} detector, dynamo exporter, opset 18, dynamic size)' in out
    _assert_matches(out, family, ['128x160', '168x136'])
    import onnx
    ops = {node.op_type for node in onnx.load(str(tmp_path / 'm.onnx')).graph.node}
    assert {'NonMaxSuppression', 'RoiAlign'} <= ops, ops


def test_custom_operators_equal_mmcv():
    """mmvit_ext::nms / roi_align run mmcv's kernels: the same indices and features."""
    from mmcv.ops import nms as mmcv_nms
    from mmcv.ops import roi_align as mmcv_roi_align

    from mmvit_ext import deploy_ops
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 80
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=g) * 30], 1)
    scores = torch.rand(200, generator=g)
    assert torch.equal(deploy_ops.nms(boxes, scores, 0.5), mmcv_nms(boxes, scores, 0.5)[1])
    feats = torch.randn(2, 4, 20, 24, generator=g)
    rois = torch.cat([torch.tensor([[0.]] * 100 + [[1.]] * 100), boxes[:, :4] / 4], 1)
    assert torch.equal(deploy_ops.roi_align(feats, rois, 7, 7, 0.25, 0, True),
                       mmcv_roi_align(feats, rois, (7, 7), 0.25, 0, 'avg', True))
    with pytest.raises(ValueError, match=r'rois must be \(K, 5\)'):
        deploy_ops.roi_align(feats, rois[:, 1:], 7, 7, 0.25, 0, True)


def test_unsupported_requests_are_refused(tmp_path):
    code, out = _export([DEMOS['DGT'], '--opset', '15', '--shape', '64', '64'], tmp_path)
    assert code == 1 and 'needs opset >= 16' in out and 'Traceback' not in out, out
    code, out = _export([DEMOS['QnAViT'], '--backbone', '--exporter', 'dynamo', '--dynamic',
                         '--shape', '128', '160'], tmp_path)
    assert code == 1 and 'export at --shape 256 320 or larger' in out, out
    cascade = ('configs/dilateformer/'
               'cascade-mask-rcnn_dilateformer-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py')
    code, out = _export([cascade, '--shape', '64', '64'], tmp_path)
    assert code == 1 and 'not CascadeRoIHead yet' in out and '--backbone' in out, out


def _build(config):
    from mmengine.config import Config

    from mmvit_ext.utils.build import build_model_from_cfg
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(Config.fromfile(f'{REPO}/{config}'))
    return model.eval(), scope


def test_export_ready_detector_equals_mmdet_tensor_mode():
    """The rewritten RPN (every level sorted, no size-dependent branch) and RoI extractor (every
    level pooled, masked) give mmdet's own tensor-mode outputs exactly, at odd sizes."""
    from mmdet.structures import DetDataSample

    from mmvit_ext.deployment import export_rewrites, exportable
    model, scope = _build(DEMOS['DilateFormer'])
    module = exportable(model, scope)
    for h, w in [(128, 160), (97, 131)]:
        x = torch.randn(1, 3, h, w)
        sample = DetDataSample(metainfo=dict(img_shape=(h, w)))
        with torch.no_grad():
            ref = model(x, [sample], mode='tensor')[0]
            with export_rewrites():
                got = module(x)
        assert len(got) == 4 and got[0].shape[1] == 5
        for a, b in zip(got[1:], ref):
            assert a.shape == b.shape and torch.equal(a, b)
        with pytest.raises(ValueError, match='batch 1'):
            module(torch.randn(2, 3, h, w))


def test_fpn_extra_level_is_a_strided_slice_inside_the_rewrites():
    """FPN's extra level (``max_pool2d(x, 1, stride=2)``) is ``x[..., ::2, ::2]`` while exporting
    (torch 2.11's pooling shape rule tests the map's parity, which torch.export then fixed);
    same values, any other pooling call unchanged, torch's functional restored after."""
    import mmdet.models.necks.fpn as fpn

    from mmvit_ext.deployment import export_rewrites
    for h, w in [(11, 12), (8, 7), (1, 1)]:
        x = torch.randn(2, 3, h, w)
        with export_rewrites(None):
            got = fpn.F.max_pool2d(x, 1, stride=2)
            assert fpn.F is not F and fpn.F.relu is F.relu
            assert torch.equal(fpn.F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
        assert fpn.F is F
        assert torch.equal(got, F.max_pool2d(x, 1, stride=2))


def _passed_checks(out, checks):
    """How many of check_parity.py's per-check, per-size lines for ``checks`` say ok or near-tie."""
    return len(re.findall(rf'({"|".join(checks)}) at \d+x\d+ on cpu: .*: (ok|routing near-tie)',
                          out))


def _check_parity(args, timeout=600):
    proc = subprocess.run([sys.executable, 'tools/deployment/check_parity.py', *args], cwd=REPO,
                          env=run_env(), capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def test_check_parity_runs_a_whole_detector_program_across_size_boundaries():
    """tools/deployment/check_parity.py: torch.export and TorchScript against eager. The program
    exported at 256x320 runs at 352x384, across the RPN's per-level cut (nms_pre 300: the
    stride-32 level has 240 anchors at the example, 396 there; a plain ``[:nms_pre]`` fixed the
    program to one side) and the parity of the stride-32 map (8 vs 11)."""
    code, out = _check_parity([DEMOS['QnAViT'], '--checks', 'export', 'trace', '--check-shape',
                               '352', '384'])
    assert code == 0, out[-3000:]
    for check in ['export at 256x320', 'export at 352x384', 'trace at 256x320']:
        assert re.search(rf'QnAViT detector, {check} on cpu: max relative difference '
                         rf'\S+: (ok|routing near-tie)', out), out[-3000:]
    assert 'OK: 1 config(s), export, trace' in out


def test_check_parity_loads_a_checkpoint_strictly(tmp_path):
    """--checkpoint: a state dict of the config's model is loaded and checked; one that does not
    fit is refused in one line naming the key, not silently partly loaded."""
    model, _ = _build(DEMOS['DilateFormer'])
    state = {k: v + 0.01 if v.is_floating_point() else v
             for k, v in model.state_dict().items()}
    torch.save({'state_dict': state}, tmp_path / 'good.pth')
    del state['backbone.norm0.weight']
    torch.save({'state_dict': state}, tmp_path / 'bad.pth')
    code, out = _check_parity([DEMOS['DilateFormer'], '--backbone', '--checks', 'trace',
                               '--checkpoint', str(tmp_path / 'good.pth')])
    assert code == 0 and 'OK: 1 config(s), trace' in out, out[-3000:]
    code, out = _check_parity([DEMOS['DilateFormer'], '--backbone', '--checks', 'trace',
                               '--checkpoint', str(tmp_path / 'bad.pth')])
    assert code != 0 and 'backbone.norm0.weight' in out and 'Traceback' not in out, out[-3000:]


def test_check_parity_fails_and_says_where():
    code, out = _check_parity([DEMOS['DilateFormer'], '--backbone', '--checks', 'trace',
                               '--rtol', '1e-12'])
    assert code == 1, out[-3000:]
    assert re.search(r'DilateFormer backbone, trace at 256x320 on cpu: max relative difference '
                     r"\S+ \(eager's own rounding drift: \S+\): FAILED", out), out
    assert f'error: checks failed for {DEMOS["DilateFormer"]}' in out


@pytest.mark.parametrize('size,out', [((13, 17), 6), ((6, 6), 6), ((5, 9), (3, 2)),
                                      ((40, 33), (1, 3))])
def test_plain_adaptive_pooling_equals_pytorch(size, out):
    from mmvit_ext.deployment import plain_adaptive_avg_pool2d
    x = torch.randn(2, 3, *size)
    assert torch.allclose(plain_adaptive_avg_pool2d(x, out), F.adaptive_avg_pool2d(x, out),
                          atol=1e-6)


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_torch_export_keeps_height_and_width_free(family):
    """torch.export with dynamic height and width: one program, exact at sizes it was not
    exported at (odd ones, ones where nothing or everything is padded, and one whose token
    counts cross the size tests of eager fast paths, e.g. DGT's blocked group sums at 2048).
    Where eager takes another summation order than the program (DGT's group sums at >= 2048
    tokens), a k-means near-tie may go the other way: allowed only where eager itself moves as
    much under a 1e-5 input change (the export tool's rule)."""
    from mmvit_ext.deployment import (export_program, exportable, free_size_range,
                                      max_relative_differences, self_drift)
    model, scope = _build(DEMOS[family])
    module = exportable(model, scope, whole=False)
    assert free_size_range(256, 320) == (240, 4096)
    program = export_program(module, torch.randn(1, 3, 256, 320)).module()
    for size in [(288, 280), (245, 251), (240, 448), (512, 544)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            got, ref = program(x), module(x)
        assert [a.shape for a in got] == [b.shape for b in ref], (size, family)
        worst = max(max_relative_differences(got, ref))
        if worst >= 1e-5:
            drift = self_drift(module, x, ref)
            assert family in ROUTING and near_tie(worst, drift), (
                size, family, worst, drift)


@pytest.mark.parametrize('family,optimize', [('QnAViT', []), ('DGT', ['--no-optimize'])])
def test_dynamo_onnx_export_of_windowed_and_grouped_backbones(family, optimize, tmp_path):
    """Through the dynamo exporter with free height and width (from torch.export), with and
    without onnxscript's graph optimizer."""
    code, out = _export([DEMOS[family], '--backbone', '--exporter', 'dynamo', '--image', 'noise',
                         '--shape', '256', '320', '--dynamic', *optimize], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} backbone, dynamo exporter, opset 18, dynamic size)' in out
    _assert_matches(out, family, ['256x320', '296x296'])


def _zoo_configs(pattern):
    """The four families' configs matching ``pattern`` (not the ablation's variants)."""
    return sorted(osp.relpath(p, REPO) for p in glob.glob(f'{REPO}/configs/*/{pattern}')
                  if '/ablation/' not in p)


VARIANTS = _zoo_configs('mask-rcnn_*_fpn_1x_coco.py')


@pytest.mark.slow
@pytest.mark.timeout(3600)  # DilateFormer-B, dynamo: > 15 min for backbone and detector
@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
@pytest.mark.parametrize('config', VARIANTS)
def test_every_variant_exports_its_whole_detector(config, exporter, tmp_path):
    """Every zoo variant (T/S/M/B) through both exporters: backbone on noise, then the whole
    Mask R-CNN, free height and width, random weights (a random RPN scores every anchor ~0.5: its
    top-k and NMS sit at near-ties, which the tool measures and says)."""
    code, out = _export([config, '--backbone', '--image', 'noise', '--shape', '256', '320',
                         '--dynamic', '--exporter', exporter], tmp_path)
    assert code == 0, out[-3000:]
    family = re.search(r'\((\w+) backbone,', out).group(1)
    _assert_matches(out, family, ['256x320', '296x296'])
    # the dynamo exporter's graph optimizer alone takes ~5 min for DilateFormer-B on 2 cores
    code, out = _export([config, '--shape', '256', '320', '--dynamic', '--exporter', exporter],
                        tmp_path, timeout=1800)
    assert code == 0, out[-3000:]
    assert f'({family} detector, {exporter} exporter' in out
    _assert_matches(out, family, ['256x320', '296x296'])


@pytest.mark.slow
@pytest.mark.parametrize('config', VARIANTS)
def test_every_variant_backbone_through_torch_export_and_trace(config):
    """Every zoo variant's backbone (paper sizes, random weights, noise): a torch.export program
    with free height and width at 256x320 and 296x296, and jit.trace + save + load, against eager
    (tools/deployment/check_parity.py)."""
    code, out = _check_parity([config, '--backbone', '--image', 'noise', '--checks', 'export',
                               'trace'])
    assert code == 0, out[-3000:]
    assert _passed_checks(out, ['export', 'trace']) == 3, out[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('config', VARIANTS)
def test_every_variant_backbone_through_torch_compile(config):
    """Every zoo variant's backbone (paper sizes, random weights, noise): torch.compile
    (inductor, dynamic=True) at 256x320 and 296x296 against eager. Inductor's C++
    build makes this 5-40 min per variant on 2 cores (SG-Former-B: 40 min)."""
    code, out = _check_parity([config, '--backbone', '--image', 'noise', '--checks', 'compile'],
                              timeout=3500)
    assert code == 0, out[-3000:]
    assert _passed_checks(out, ['compile']) == 2, out[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize('config', [*DEMOS.values(), SEG_DEMO, CLS_DEMO])
def test_whole_model_through_torch_compile(config):
    """The whole demo Mask R-CNN / UperNet / classifier in tensor mode through torch.compile
    (inductor, dynamic=True) at 256x320 and 296x296 on the demo image (3-11 min each on 2 cores;
    the detector's NMS and data-dependent filter break the graph, which dynamo handles)."""
    code, out = _check_parity([config, '--checks', 'compile'], timeout=1700)
    assert code == 0, out[-3000:]
    assert _passed_checks(out, ['compile']) == 2, out[-3000:]


SEG_VARIANTS = _zoo_configs('*_upernet_8xb2-160k_ade20k-512x512.py')


@pytest.mark.slow
@pytest.mark.parametrize('exporter', ['torchscript', 'dynamo'])
@pytest.mark.parametrize('config', SEG_VARIANTS)
def test_every_variant_exports_its_whole_upernet(config, exporter, tmp_path):
    """Every zoo variant's UperNet (the ADE20K 160k config, random weights) through both
    exporters, free height and width, on noise."""
    code, out = _export([config, '--image', 'noise', '--shape', '256', '320', '--dynamic',
                         '--exporter', exporter], tmp_path)
    assert code == 0, out[-3000:]
    family = re.search(r'\((\w+) segmentor, ' + exporter, out).group(1)
    _assert_matches(out, family, ['256x320', '296x296'])


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(DEMOS))
def test_compiled_backbone_matches_eager_at_two_sizes(family):
    """torch.compile (inductor) forward parity; minutes per model on 2 CPU cores, hence opt-in
    (-m slow). Dynamic shapes: one graph for both sizes."""
    model, _ = _build(DEMOS[family])
    backbone = model.backbone
    compiled = torch.compile(backbone, dynamic=True)
    for size in [(128, 160), (96, 136)]:
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            for a, b in zip(compiled(x), backbone(x)):
                assert a.shape == b.shape
                assert float((a - b).abs().max() / b.abs().max()) < 1e-4 or family in ROUTING


class _SizesAsTensors(torch.overrides.TorchFunctionMode):
    """Records the ops that get a traced size as a tensor bound or index. Under torch.jit.trace
    a size reaches torch functions as a 0-dim int64 tensor, on the CPU even when the model runs
    on CUDA, where these ops then refuse it ("Expected all tensors to be on the same device":
    QnA-ViT's repeat_interleave and DGT's clamp did, on the GPU machine)."""
    REFUSING = {'clamp', 'clamp_min', 'clamp_max', 'clip', 'repeat_interleave', 'index_select',
                'gather', 'take', 'embedding', 'scatter'}

    def __init__(self):
        super().__init__()
        self.found = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, '__name__', '')
        if name in self.REFUSING and any(
                torch.is_tensor(v) and v.dim() == 0 and v.dtype == torch.long
                for v in list(args[1:]) + list(kwargs.values())):
            self.found.add(name)
        return func(*args, **kwargs)


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_trace_save_load_follows_the_input_size(family, tmp_path):
    model, _ = _build(DEMOS[family])
    backbone = model.backbone
    with torch.no_grad(), _SizesAsTensors() as sizes:
        traced = torch.jit.trace(backbone, torch.randn(1, 3, 96, 128), check_trace=False)
    assert not sizes.found, f'traced sizes reach {sizes.found}: the trace fails on CUDA'
    path = tmp_path / 'backbone.pt'
    torch.jit.save(traced, str(path))
    loaded = torch.jit.load(str(path))
    x = torch.randn(1, 3, 96, 128)  # the traced size: graph == eager
    with torch.no_grad():
        for a, b in zip(loaded(x), backbone(x)):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)


def test_whole_detector_trace_save_load(tmp_path):
    """A whole Mask R-CNN traced with its NMS and RoIAlign as mmvit_ext operators, saved and
    loaded again: the same proposals and head outputs at the traced size."""
    from mmvit_ext.deployment import export_rewrites, exportable
    model, scope = _build(DEMOS['DilateFormer'])
    module = exportable(model, scope)
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad(), export_rewrites(None):
        with _SizesAsTensors() as sizes:
            traced = torch.jit.trace(module, x, check_trace=False)
        ref = module(x)
    assert not sizes.found, f'traced sizes reach {sizes.found}: the trace fails on CUDA'
    assert 'mmvit_ext::nms' in str(traced.inlined_graph)
    torch.jit.save(traced, str(tmp_path / 'detector.pt'))
    with torch.no_grad():
        got = torch.jit.load(str(tmp_path / 'detector.pt'))(x)
    for a, b in zip(got, ref):  # the traced graph holds the plain-op attention forms: 1e-4
        assert a.shape == b.shape and float((a - b).abs().max() / b.abs().max()) < 1e-4


def test_near_tie_rule_needs_both_an_unstable_input_and_a_close_result():
    """The one pass rule past the tolerance that both tools and these tests apply."""
    assert near_tie(worst=3e-3, drift=2e-3)        # eager itself moves as far: a tie
    assert not near_tie(worst=5e-3, drift=2e-3)    # further than eager's own drift
    assert not near_tie(worst=5e-5, drift=5e-5)    # eager stable: any difference is a bug


def _detector_outputs(n=6, masks=3):
    """Tensor-mode detector outputs: proposals (n, 5) sorted by score, per-proposal heads, and a
    mask head over the first ``masks`` proposals."""
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(n, 4, generator=g) * 200
    scores = torch.linspace(0.9, 0.5, n)
    return (torch.cat([boxes, scores[:, None]], 1), torch.randn(n, 4, generator=g),
            torch.randn(masks, 2, 7, 7, generator=g))


def _swap(outputs, i, j):
    """``outputs`` with rows i and j exchanged where an output has both."""
    swapped = []
    for t in outputs:
        t = t.clone()
        if max(i, j) < t.shape[0]:
            t[[i, j]] = t[[j, i]]
        swapped.append(t)
    return tuple(swapped)


def test_tied_proposals_in_the_other_order_are_the_same_detection():
    """Two proposals whose scores tie in the 7th digit may come in either order (a compiled or
    exported RPN sums in another order); the comparison pairs them up again, heads and masks
    with them. Anything else still differs."""
    from mmvit_ext.deployment import align_tied_proposals, max_relative_differences
    ref = _detector_outputs()
    ref[0][2, 4] = ref[0][1, 4] - 1e-7  # rows 1 and 2 tie
    got = _swap(ref, 1, 2)
    assert max(max_relative_differences(got, ref)) > 0.1
    assert max(max_relative_differences(align_tied_proposals(got, ref), ref)) == 0
    # also as onnxruntime's numpy arrays
    aligned = align_tied_proposals([t.numpy() for t in got], ref)
    assert max(max_relative_differences(aligned, ref)) == 0
    # scores apart: a real ranking difference, left as it is
    ref[0][2, 4] = ref[0][1, 4] - 1e-3
    got = _swap(ref, 1, 2)
    assert max(max_relative_differences(align_tied_proposals(got, ref), ref)) > 0.1
    # tied scores, but a box moved: not the same proposals
    ref[0][2, 4] = ref[0][1, 4]
    got = _swap(ref, 1, 2)
    got[0][1, 0] += 1.
    assert max(max_relative_differences(align_tied_proposals(got, ref), ref)) > 1e-3


def test_tie_across_the_mask_heads_rows_leaves_the_masks_as_they_are():
    """The mask head sees the first rows only: a tie between its last row and the next proposal
    reorders the proposals and box heads, and the masks still show the difference."""
    from mmvit_ext.deployment import align_tied_proposals, max_relative_differences
    ref = _detector_outputs(masks=3)
    ref[0][3, 4] = ref[0][2, 4]
    got = list(_swap(ref, 2, 3))
    got[2] = got[2].clone()
    got[2][2] = torch.randn(2, 7, 7)  # the mask of the proposal that took row 2
    diffs = max_relative_differences(align_tied_proposals(got, ref), ref)
    assert diffs[:2] == [0, 0] and diffs[2] > 0.1
