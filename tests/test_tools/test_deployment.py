"""Export: tools/deployment/export_onnx.py end to end for every family's demo Mask R-CNN and the
Cascade Mask R-CNN demo with weights trained by this run (final detections against mmdet's
predict at three sizes), UperNet with trained weights (label maps), the classifier, backbones
alone; the runtime helper (tools/deployment/infer_onnx.py, OnnxModel) against mmdet's and
mmseg's inference APIs; torch.export / torch.compile / TorchScript through check_parity.py."""
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
CASCADE_DEMO = 'configs/_small_/cascade-mask-rcnn_dilateformer-demo_fpn_small-coco.py'
SEG_DEMO = 'configs/_small_/dilateformer-demo_upernet_small-ade20k.py'
CLS_DEMO = 'configs/_small_/dilateformer-demo_small-imagenet.py'
ROUTING = ('SGFormer', 'DGT')
LINE = re.compile(r'outputs at (\d+x\d+): max relative difference (\S+) \(<= [^)]*\)'
                  r'(; routing near-tie: PyTorch itself moves by (\S+))?')
DETECTIONS = re.compile(r'detections at (\d+x\d+) vs mmdet predict: (\d+) matched of (\d+), '
                        r'(\d+) missing, (\d+) extra \((\d+) of them at the score cut, '
                        r'(\d+) pairs swapped at an NMS near-tie\)')


def _export(args, tmp_path, timeout=600):
    proc = subprocess.run([sys.executable, 'tools/deployment/export_onnx.py', *args, '--out',
                           str(tmp_path / 'm.onnx')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _checks(out):
    """[(size, worst difference, PyTorch's own drift or None)] as the tool printed them."""
    return [(size, float(worst), float(drift) if drift else None)
            for size, worst, _, drift in LINE.findall(out)]


def _assert_matches(out, family, sizes):
    """Within 1e-4 everywhere, except where the backbone routes (SG-Former, DGT) and PyTorch
    itself is as unstable at that input (a near-tie, which the tool says)."""
    rows = _checks(out)
    assert [size for size, _, _ in rows] == sizes, out
    for size, worst, drift in rows:
        if worst <= 1e-4:
            continue
        assert family in ROUTING and drift is not None and near_tie(worst, drift), out


def _assert_detections_match(out, sizes):
    """Every detection of mmdet's predict found in the file's at each size (none missing, none
    extra, except at the score cut or swapped at an NMS near-tie), and some detections to
    compare."""
    rows = DETECTIONS.findall(out)
    assert [r[0] for r in rows] == sizes, out[-3000:]
    for size, matched, reference, missing, extra, at_cut, swaps in rows:
        assert int(reference) > 0, f'no detections at {size}: nothing was compared\n{out}'
        assert int(missing) + int(extra) == int(at_cut) + 2 * int(swaps), out[-3000:]
        assert int(matched) >= int(reference) - int(at_cut) - int(swaps), out[-3000:]


@pytest.mark.parametrize('family', sorted(DEMOS))
def test_backbone_exports_with_free_size_and_matches_pytorch(family, tmp_path):
    code, out = _export([DEMOS[family], '--backbone', '--image', 'noise', '--runs', '0',
                         '--shape', '128', '160', '--dynamic', '--check-shape', '96', '128'],
                        tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} backbone, torchscript exporter, opset 17, dynamic size;' in out
    _assert_matches(out, family, ['128x160', '96x128'])


def _onnx_outputs_and_ops(path):
    import onnx
    graph = onnx.load(str(path)).graph
    ops = set()
    for node in graph.node:
        ops.add((node.domain, node.op_type))
    return [o.name for o in graph.output], ops


@pytest.mark.parametrize('config', [
    *DEMOS.values(), pytest.param(CASCADE_DEMO, marks=pytest.mark.slow)],  # cascade: ~2 min
    ids=[*DEMOS, 'cascade'])  # in the order of the values
def test_end_to_end_detector_with_trained_weights_matches_mmdet(config, trained_checkpoint,
                                                                tmp_path):
    """The issue's command with trained weights: one graph from pixels to dets / labels / masks,
    free height and width, checked against mmdet's model.predict at the export size and at two
    more (168x136 is not a multiple of 32), in the original image's frame."""
    code, out = _export([config, trained_checkpoint(config), '--shape', '128', '160',
                         '--dynamic', '--runs', '1'], tmp_path)
    assert code == 0, out[-3000:]
    kind = 'Cascade Mask R-CNN' if 'cascade' in config else 'Mask R-CNN'
    assert f' {kind}, torchscript exporter, opset 17, dynamic size; outputs dets, labels, ' \
           f'masks)' in out, out
    _assert_detections_match(out, ['128x160', '168x136', '192x256'])
    assert re.search(r'latency at 128x160 \(median of 1, default threads\): onnxruntime '
                     r'[\d.]+ ms, PyTorch eager [\d.]+ ms', out), out
    names, ops = _onnx_outputs_and_ops(tmp_path / 'm.onnx')
    assert names == ['dets', 'labels', 'masks']
    assert {d for d, _ in ops} <= {'', 'ai.onnx'}, ops  # standard operators only
    assert {('', 'NonMaxSuppression'), ('', 'RoiAlign'), ('', 'TopK')} <= ops, ops


def test_trained_rpn_reaches_the_logits_onnxruntime_rounds_to_zero(trained_checkpoint):
    """Why ranking is on logits: the trained demo RPN scores background anchors below -18,
    where onnxruntime's CPU sigmoid gives exactly 0 (ties) and torch's does not."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from mmvit_ext.deployment import (build_for_export, example_image, exportable,
                                      module_input, resized)
    config = DEMOS['DilateFormer']
    _, model, scope = build_for_export(config, trained_checkpoint(config))
    module = exportable(model, scope)
    x = module_input(module, resized(example_image(), (128, 160)))
    with torch.no_grad():
        feats = model.extract_feat(module.preprocess(x))
        logits = torch.cat([s.flatten() for s in model.rpn_head(feats)[0]])
    low = logits[logits < -18]
    assert len(low) > 1, float(logits.min())
    graph = helper.make_graph([helper.make_node('Sigmoid', ['x'], ['y'])], 'g',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [None])])
    session = ort.InferenceSession(helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 17)]).SerializeToString(),
        providers=['CPUExecutionProvider'])
    ort_sig = session.run(None, {'x': low.numpy()})[0]
    assert (torch.sigmoid(low) > 0).all() and (ort_sig == 0).sum() > 1, ort_sig[:10]


def test_end_to_end_detector_equals_mmdet_predict_exactly():
    """Eager, the exported module (preprocessing, RPN ranked on logits, decoding, multi-class
    NMS, masks at the final boxes; Mask R-CNN and Cascade) gives mmdet's predict bit for bit,
    random weights, odd sizes; batch 2 is refused."""
    from mmvit_ext.deployment import check_size, example_image, exportable
    for config in (DEMOS['DilateFormer'], CASCADE_DEMO):
        model, scope = _build(config)
        module = exportable(model, scope)
        for shape in [(97, 131), (128, 160)]:
            result = check_size(module, model, module, example_image(), shape)
            m = result['match']
            assert m['ok'] and m['matched'] == m['reference'] > 0, result['line']
            assert m['worst_box_iou'] == 1 and m['worst_mask_iou'] == 1, result['line']
            assert m['worst_score_gap'] == 0, result['line']
        with pytest.raises(ValueError, match='batch 1'):
            module(torch.zeros(2, 3, 64, 64))


def _random_weights_boxes_match(config, shapes, tmp_path, exporter='torchscript',
                                score_thr=None):
    """Export ``config`` with random weights (free size) and check, at ``shapes``, that every
    box, label and score of the file matches mmdet's predict (masks left out: a random mask head
    sits at the 0.5 threshold). ``score_thr`` replaces the config's in both (a random 80-class
    head scores every class ~1/81, below COCO's 0.05). -> the matches."""
    import onnxruntime as ort
    from mmengine.config import Config

    from mmvit_ext.deployment import (detections_to_sample, example_image, export_metadata,
                                      export_onnx, exportable, match_detections, module_input,
                                      resized)
    model, scope = _build(config)
    if score_thr is not None:
        model.roi_head.test_cfg.score_thr = score_thr
    module = exportable(model, scope)
    image = example_image()
    x = module_input(module, resized(image, shapes[0]))
    cfg = Config.fromfile(f'{REPO}/{config}')
    export_onnx(module, x, str(tmp_path / 'r.onnx'), export_metadata(cfg, model, module, scope),
                exporter)
    session = ort.InferenceSession(str(tmp_path / 'r.onnx'), providers=['CPUExecutionProvider'])
    matches = []
    for shape in shapes:
        pixels = resized(image, shape)
        meta = dict(img_shape=shape, ori_shape=image.shape[:2],
                    scale_factor=(shape[1] / image.shape[1], shape[0] / image.shape[0]))
        dets, labels, _ = session.run(None, {'input': module_input(module, pixels).numpy()})
        ref = module.task.reference_sample(model, pixels, meta)
        del ref.pred_instances.masks
        m = match_detections(detections_to_sample(dets, labels, None, meta), ref,
                             module.test_cfg.score_thr, module.test_cfg.max_per_img)
        assert m['ok'] and m['reference'] > 0, (shape, m)
        matches.append(m)
    return matches


@pytest.mark.parametrize('config', [DEMOS['DilateFormer'], CASCADE_DEMO],
                         ids=['mask-rcnn', 'cascade'])
def test_random_weights_detector_boxes_match(config, tmp_path):
    """Random weights, the separate case: a random RPN scores anchors near 0.5 and its ranking
    is tie-prone, yet every box, label and score of the file matches mmdet's (all 100 kept)."""
    matches = _random_weights_boxes_match(config, [(128, 160), (168, 136)], tmp_path)
    assert all(m['reference'] == 100 for m in matches), matches


def _export_in_process(config, checkpoint, out, shape=(128, 160), **kwargs):
    from mmengine.config import Config

    from mmvit_ext.deployment import (build_for_export, example_image, export_metadata,
                                      export_onnx, exportable, module_input, resized)
    cfg, model, scope = build_for_export(config, checkpoint)
    module = exportable(model, scope, **kwargs)
    x = module_input(module, resized(example_image(), shape))
    export_onnx(module, x, str(out), export_metadata(Config.fromfile(f'{REPO}/{config}'), model,
                                                     module, scope))
    return model


def test_runtime_helper_gives_what_the_frameworks_inference_apis_give(trained_checkpoint,
                                                                      tmp_path):
    """OnnxModel(path)(image file) runs the stored test pipeline, the file, the paste-back and the
    rescale: the same detections as mmdet's inference_detector on the same file (an image of
    another size than the export's, so the pipeline resizes and the results are rescaled), and
    the same label map as mmseg's inference_model. infer_onnx.py prints and draws them."""
    import cv2
    from mmdet.apis import inference_detector
    from mmseg.apis import inference_model

    from mmvit_ext.deployment import OnnxModel, example_image, label_agreement, match_detections
    image = tmp_path / 'image.png'
    cv2.imwrite(str(image), example_image())  # 480 x 640: the pipeline resizes it to 120 x 160
    config = DEMOS['DilateFormer']
    model = _export_in_process(config, trained_checkpoint(config), tmp_path / 'det.onnx')
    model.cfg = __import__('mmengine').Config.fromfile(f'{REPO}/{config}')
    ref = inference_detector(model, str(image))
    got = OnnxModel(str(tmp_path / 'det.onnx'))(str(image))
    assert got.ori_shape == ref.ori_shape == (480, 640) and got.img_shape == (120, 160)
    m = match_detections(got, ref, 0.05, 100)
    assert m['ok'] and m['matched'] == m['reference'] > 0, m
    assert tuple(got.pred_instances.masks.shape[1:]) == (480, 640)
    proc = subprocess.run([sys.executable, 'tools/deployment/infer_onnx.py',
                           str(tmp_path / 'det.onnx'), str(image), '--out',
                           str(tmp_path / 'vis.png')], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r'\d+ detections with score >= 0.3', proc.stdout), proc.stdout
    assert re.search(r'  (square|circle|triangle) 0\.\d{3} \[', proc.stdout), proc.stdout
    assert cv2.imread(str(tmp_path / 'vis.png')).shape[:2] == (480, 640)

    seg_config = SEG_DEMO
    seg = _export_in_process(seg_config, trained_checkpoint(seg_config), tmp_path / 'seg.onnx',
                             seg_logits=True)
    seg.cfg = __import__('mmengine').Config.fromfile(f'{REPO}/{seg_config}')
    ref = inference_model(seg, str(image))
    got = OnnxModel(str(tmp_path / 'seg.onnx'))(str(image))
    assert got.pred_sem_seg.shape == ref.pred_sem_seg.shape == (480, 640)
    assert label_agreement(got.pred_sem_seg.data, ref.pred_sem_seg.data) >= 0.999


def test_openvino_in_f32_gives_onnxruntimes_detections_and_says_what_the_plugin_picks(
        trained_checkpoint, tmp_path):
    """OpenVINO reads the exported file itself. In f32 its detections are onnxruntime's; its CPU
    plugin's own choice is bf16 where the CPU has it (then the detections change: measured and
    shown by compare_runtimes.py, not asserted, as it depends on the CPU)."""
    import cv2
    import openvino

    from mmvit_ext.deployment import OnnxModel, example_image, match_detections
    config = DEMOS['DilateFormer']
    _export_in_process(config, trained_checkpoint(config), tmp_path / 'det.onnx')
    image = example_image()
    ref = OnnxModel(str(tmp_path / 'det.onnx'))(image)
    ov_model = OnnxModel(str(tmp_path / 'det.onnx'), runtime='openvino')
    assert ov_model.session.precision == 'f32'
    m = match_detections(ov_model(image), ref, 0.05, 100)
    assert m['ok'] and m['matched'] == m['reference'] > 0, m

    proc = subprocess.run([sys.executable, 'tools/deployment/compare_runtimes.py',
                           str(tmp_path / 'det.onnx'), '--precisions', 'f32', 'plugin'],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    has_bf16 = 'BF16' in openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')
    plugin = 'bf16' if has_bf16 else 'f32'
    assert re.search(rf'\| f32 \| f32 \| example image \| yes \| {m["reference"]} of '
                     rf'{m["reference"]} detections matched', proc.stdout), proc.stdout
    assert re.search(rf'\| plugin \| {plugin} \| example image \| (yes|no) \|', proc.stdout)
    assert re.search(r'^device: .+\(OpenVINO CPU capabilities: ', proc.stdout, re.M)

    path = tmp_path / 'image.png'
    cv2.imwrite(str(path), image)
    proc = subprocess.run([sys.executable, 'tools/deployment/infer_onnx.py',
                           str(tmp_path / 'det.onnx'), str(path), '--runtime', 'openvino'],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and re.search(r'\d+ detections with score >= 0.3', proc.stdout), \
        proc.stderr[-2000:]


def test_a_fixed_size_file_names_the_size_it_takes(tmp_path):
    """A file exported without --dynamic, given an image that the pipeline brings to another
    size: one line with both sizes and the fix (onnxruntime's INVALID_ARGUMENT before)."""
    from mmengine.config import Config

    from mmvit_ext.deployment import (OnnxModel, build_for_export, example_image,
                                      export_metadata, export_onnx, exportable, module_input,
                                      resized)
    from mmvit_ext.deployment.metadata import ModelFileError
    config = DEMOS['DilateFormer']
    cfg, model, scope = build_for_export(config, None)
    module = exportable(model, scope)
    x = module_input(module, resized(example_image(), (128, 160)))
    export_onnx(module, x, str(tmp_path / 'fixed.onnx'),
                export_metadata(Config.fromfile(f'{REPO}/{config}'), model, module, scope),
                dynamic=False)
    with pytest.raises(ModelFileError, match=r'fixed\.onnx was exported for 128x160 inputs '
                       r'only, and this image is 120x160 after the test pipeline: export with '
                       r'--dynamic'):
        OnnxModel(str(tmp_path / 'fixed.onnx'))(example_image())


@pytest.mark.parametrize('exporter', [
    'torchscript', pytest.param('dynamo', marks=pytest.mark.slow)])  # dynamo: ~1 min, opt-in
def test_end_to_end_upernet_with_trained_weights_matches_mmseg(exporter, trained_checkpoint,
                                                               tmp_path):
    config = SEG_DEMO
    extra = ['--seg-logits'] if exporter == 'torchscript' else []
    code, out = _export([config, trained_checkpoint(config), '--exporter', exporter, '--shape',
                         '128', '160', '--dynamic', '--runs', '1', *extra], tmp_path)
    assert code == 0, out[-3000:]
    assert f'(DilateFormer segmentor, {exporter} exporter' in out
    rows = re.findall(r'label map at (\d+x\d+) vs mmseg predict: ([\d.]+)% of pixels agree',
                      out)
    assert [r[0] for r in rows] == ['128x160', '168x136', '192x256'], out
    assert all(float(r[1]) >= 99.9 for r in rows), out
    names, _ = _onnx_outputs_and_ops(tmp_path / 'm.onnx')
    assert names == (['labels', 'seg_logits'] if extra else ['labels'])


def test_classifier_exports_whole_and_a_mismatch_fails(tmp_path):
    code, out = _export([CLS_DEMO, '--shape', '64', '64', '--dynamic', '--runs', '0'], tmp_path)
    assert code == 0 and '(DilateFormer classifier' in out, out
    assert 'OK: the exported model matches PyTorch at 64x64, 104x40, 128x160' in out, out
    assert _onnx_outputs_and_ops(tmp_path / 'm.onnx')[0] == ['scores']
    code, out = _export([CLS_DEMO, '--shape', '64', '64', '--rtol', '0', '--runs', '0'],
                        tmp_path)
    assert code == 1 and 'error: the exported model does not match PyTorch at 64x64' in out, out


def test_routing_near_tie_is_measured_and_said(tmp_path):
    """SG-Former on the small dataset's image at 168x136: the significance sort has near-ties
    (flat regions), PyTorch itself moves by ~1e-2 under 1e-5 input changes, and the tool says
    that the ONNX model is no further from PyTorch than that instead of failing or hiding it."""
    code, out = _export([DEMOS['SGFormer'], '--backbone', '--shape', '168', '136', '--runs',
                         '0'], tmp_path)
    assert code == 0, out[-3000:]
    [(_, worst, drift)] = _checks(out)
    assert worst > 1e-4 and drift > 1e-3 and worst <= 2 * drift, out
    assert 'routing near-tie: PyTorch itself moves by' in out, out


@pytest.mark.slow  # ~100 s on 2 cores; the dynamo exporter is also run on backbones by default
def test_end_to_end_detector_through_the_dynamo_exporter(trained_checkpoint, tmp_path):
    """NMS and RoIAlign as torch operators (mmvit_ext.deployment.nms_roi_align) with ONNX
    translations:
    the whole trained detector goes through torch.export with free height and width, then to
    ONNX (opset 18), and its detections match mmdet's at three sizes (~70 s)."""
    config = DEMOS['DilateFormer']
    code, out = _export([config, trained_checkpoint(config), '--exporter', 'dynamo',
                         '--shape', '128', '160', '--dynamic', '--runs', '0'], tmp_path)
    assert code == 0, out[-3000:]
    assert '(DilateFormer Mask R-CNN, dynamo exporter, opset 18, dynamic size' in out
    _assert_detections_match(out, ['128x160', '168x136', '192x256'])
    names, ops = _onnx_outputs_and_ops(tmp_path / 'm.onnx')
    assert names == ['dets', 'labels', 'masks']
    assert {('', 'NonMaxSuppression'), ('', 'RoiAlign')} <= ops, ops


@pytest.mark.slow  # ~70-120 s each on 2 cores: opt-in, to keep the default run's time
@pytest.mark.parametrize('config', [DEMOS['QnAViT'], DEMOS['SGFormer'], DEMOS['DGT'],
                                    CASCADE_DEMO], ids=['QnAViT', 'SGFormer', 'DGT', 'cascade'])
def test_other_end_to_end_detectors_through_the_dynamo_exporter(config, trained_checkpoint,
                                                                tmp_path):
    code, out = _export([config, trained_checkpoint(config), '--exporter', 'dynamo',
                         '--shape', '256', '320', '--dynamic', '--runs', '0'], tmp_path,
                        timeout=1800)
    assert code == 0, out[-3000:]
    _assert_detections_match(out, ['256x320', '296x296', '320x416'])


def test_custom_operators_equal_mmcv():
    """mmvit_ext::nms / roi_align run mmcv's kernels: the same indices and features."""
    from mmcv.ops import nms as mmcv_nms
    from mmcv.ops import roi_align as mmcv_roi_align

    from mmvit_ext.deployment import nms_roi_align as deploy_ops
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
    """Each in one line, no traceback: an opset the exporter cannot take, a size torch.export
    cannot keep free, a config whose NMS the graph cannot hold, a file onnxruntime cannot run,
    a file without our metadata."""
    code, out = _export([DEMOS['DGT'], '--opset', '15', '--shape', '64', '64'], tmp_path)
    assert code == 2 and '--opset 15 is not supported: use 16..21' in out, out
    assert 'Traceback' not in out
    code, out = _export([DEMOS['QnAViT'], '--backbone', '--exporter', 'dynamo', '--dynamic',
                         '--shape', '128', '160'], tmp_path)
    assert code == 1 and 'export at --shape 256 320 or larger' in out, out
    config = tmp_path / 'soft_nms.py'
    config.write_text(f"_base_ = '{REPO}/{DEMOS['DilateFormer']}'\n"
                      "model = dict(test_cfg=dict(rcnn=dict(nms=dict(type='soft_nms', "
                      "iou_threshold=0.5))))\n")
    code, out = _export([str(config), '--shape', '64', '64'], tmp_path)
    assert code == 1 and 'Traceback' not in out, out
    assert out.strip().splitlines()[-1].startswith(
        'error: cannot export soft_nms.py: export supports plain per-class NMS'), out
    model, _ = _build(DEMOS['DilateFormer'])
    state = model.state_dict()
    del state['backbone.norm0.weight']
    torch.save({'state_dict': state}, tmp_path / 'bad.pth')
    code, out = _export([DEMOS['DilateFormer'], str(tmp_path / 'bad.pth'), '--shape', '64', '64'],
                        tmp_path)
    assert code == 1 and 'backbone.norm0.weight' in out and 'Traceback' not in out, out
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node('Frobnicate', ['x'], ['y'], domain='acme')], 'g',
                              [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('acme', 1)])
    entry = model.metadata_props.add()
    entry.key, entry.value = 'mmvit_ext', '{"kind": "detector", "scope": "mmdet"}'
    (tmp_path / 'custom.onnx').write_bytes(model.SerializeToString())
    from mmvit_ext.deployment import OnnxModel
    from mmvit_ext.deployment import ModelFileError
    with pytest.raises(ModelFileError, match=r'onnxruntime cannot load .*custom.onnx: '):
        OnnxModel(str(tmp_path / 'custom.onnx'))
    identity = helper.make_model(helper.make_graph(
        [helper.make_node('Identity', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])]),
        opset_imports=[helper.make_opsetid('', 17)])
    (tmp_path / 'plain.onnx').write_bytes(identity.SerializeToString())
    import cv2
    import numpy as np
    cv2.imwrite(str(tmp_path / 'img.png'), np.zeros((32, 32, 3), np.uint8))
    proc = subprocess.run([sys.executable, 'tools/deployment/infer_onnx.py',
                           str(tmp_path / 'plain.onnx'), str(tmp_path / 'img.png')],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert (f'error: {tmp_path / "plain.onnx"} has no mmvit_ext metadata: export it with '
            f'tools/deployment/export_onnx.py') in proc.stderr.splitlines(), proc.stderr[-2000:]


def _build(config):
    from mmengine.config import Config

    from mmvit_ext.apis import build_model_from_cfg
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(Config.fromfile(f'{REPO}/{config}'))
    return model.eval(), scope


def test_fpn_extra_level_is_a_strided_slice_inside_the_rewrites():
    """FPN's extra level (``max_pool2d(x, 1, stride=2)``) is ``x[..., ::2, ::2]`` while exporting
    (torch 2.11's pooling shape rule tests the map's parity, which torch.export then fixed);
    same values, any other pooling call unchanged, torch's functional restored after."""
    import mmdet.models.necks.fpn as fpn

    from mmvit_ext.deployment import exporting
    for h, w in [(11, 12), (8, 7), (1, 1)]:
        x = torch.randn(2, 3, h, w)
        with exporting('export'):
            got = fpn.F.max_pool2d(x, 1, stride=2)
            assert fpn.F is not F and fpn.F.relu is F.relu
            assert torch.equal(fpn.F.max_pool2d(x, 3, 2, 1), F.max_pool2d(x, 3, 2, 1))
        assert fpn.F is F
        assert torch.equal(got, F.max_pool2d(x, 1, stride=2))


def _passed_checks(out, checks):
    """How many of check_parity.py's per-check, per-size lines for ``checks`` say ok or near-tie."""
    return len(re.findall(rf'({"|".join(checks)}) on cpu: .* at \d+x\d+.*: ok$', out, re.M))


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
    for check, size in [('export', '256x320'), ('export', '352x384'), ('trace', '256x320')]:
        assert re.search(rf'QnAViT detector, {check} on cpu: detections at {size} vs mmdet '
                         rf'predict: (\d+) matched of \1, .*: ok', out), out[-3000:]
    assert 'OK: 1 config(s), export, trace match eager on cpu' in out


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
    assert re.search(r'DilateFormer backbone, trace on cpu: outputs at 256x320: max relative '
                     r'difference \S+ \(<= 1e-12 required\): FAILED', out), out
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
                         '--shape', '256', '320', '--dynamic', '--runs', '0', *optimize], tmp_path)
    assert code == 0, out[-3000:]
    assert f'({family} backbone, dynamo exporter, opset 18, dynamic size;' in out
    _assert_matches(out, family, ['256x320', '296x296', '320x416'])


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
    Mask R-CNN end to end, free height and width, random weights (boxes, labels and scores
    against mmdet's predict; there are no trained weights of the paper sizes here). Not the
    Cascade configs: with random 80-class heads every score is ~1/81 and the three stages' box
    refinements leave detections tied beyond what the cut rule pairs (DGT-T: 6 of 100 unmatched
    at 256x320); their trained-weights check is the Cascade demo's."""
    code, out = _export([config, '--backbone', '--image', 'noise', '--shape', '256', '320',
                         '--dynamic', '--exporter', exporter, '--runs', '0'], tmp_path)
    assert code == 0, out[-3000:]
    family = re.search(r'\((\w+) backbone,', out).group(1)
    _assert_matches(out, family, ['256x320', '296x296', '320x416'])
    _random_weights_boxes_match(config, [(256, 320), (296, 296)], tmp_path, exporter,
                                score_thr=0.005)


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
    """The whole demo Mask R-CNN / UperNet / classifier, end to end, through torch.compile
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
    rows = re.findall(r'label map at (\d+x\d+) vs mmseg predict: ([\d.]+)% of pixels agree', out)
    assert [r[0] for r in rows] == ['256x320', '296x296', '320x416'], out
    assert all(float(r[1]) >= 99.9 for r in rows), out


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
    """The end-to-end Mask R-CNN traced with its NMS and RoIAlign as mmvit_ext operators, saved
    and loaded again: the same detections at the traced size."""
    from mmvit_ext.deployment import exporting, exportable
    model, scope = _build(DEMOS['DilateFormer'])
    module = exportable(model, scope)
    x = torch.rand(1, 3, 128, 160) * 255
    with torch.no_grad():
        with exporting('trace'), _SizesAsTensors() as sizes:
            traced = torch.jit.trace(module, x, check_trace=False)
        ref = module(x)
    assert not sizes.found, f'traced sizes reach {sizes.found}: the trace fails on CUDA'
    assert 'mmvit_ext::nms' in str(traced.inlined_graph)
    torch.jit.save(traced, str(tmp_path / 'detector.pt'))
    with torch.no_grad():
        got = torch.jit.load(str(tmp_path / 'detector.pt'))(x)
    assert len(ref[0]) > 0
    from mmvit_ext.deployment import max_relative_differences
    # the traced graph holds the plain-op attention forms: within 1e-4
    assert max(max_relative_differences(got, ref)) < 1e-4


def test_near_tie_rule_needs_both_an_unstable_input_and_a_close_result():
    """The one pass rule past the tolerance that both tools and these tests apply."""
    assert near_tie(worst=3e-3, drift=2e-3)        # eager itself moves as far: a tie
    assert not near_tie(worst=5e-3, drift=2e-3)    # further than eager's own drift
    assert not near_tie(worst=5e-5, drift=5e-5)    # eager stable: any difference is a bug
