"""The refusal table's rows for exported files (deployment needs torch >= 2.5, so these run on
the newest stack; the oldest refuses the tools in one line, tests/test_utils/test_torch_features.py).

An edited metadata that names an importable callable (mmengine's Registry.get imports any dotted
name; a scope imports <scope>.registry) is refused in one line before any step is built, and
nothing runs."""
import json
import re
import socket
import sys

import numpy as np
import pytest

from ..conftest import REPO
from ..test_refusals import _one_line_error, _run


def _identity_onnx(path, metadata: str):
    from onnx import TensorProto, helper
    model = helper.make_model(helper.make_graph(
        [helper.make_node('Identity', ['input'], ['scores'])], 'g',
        [helper.make_tensor_value_info('input', TensorProto.FLOAT, [1, 3, 'h', 'w'])],
        [helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 3, 'h', 'w'])]),
        opset_imports=[helper.make_opsetid('', 17)])
    entry = model.metadata_props.add()
    entry.key, entry.value = 'mmvit_ext', metadata
    path.write_bytes(model.SerializeToString())
    return str(path)


def _pipeline_meta(steps, **fields):
    meta = dict(kind='classifier', scope='mmpretrain', input='pixels', family='DilateFormer',
                test_pipeline=[dict(type='LoadImageFromFile')] + steps, classes=['a', 'b'],
                palette=[])
    meta.update(fields)
    return meta


def _hostile_metadata(marker):
    touch = ['touch', str(marker)]
    return {
        'a dotted type: subprocess.run': _pipeline_meta([dict(type='subprocess.run',
                                                              args=touch)]),
        'a dotted type: builtins.open': _pipeline_meta([dict(type='builtins.open',
                                                             file=str(marker), mode='w')]),
        'a dotted type: os.system': _pipeline_meta([dict(type='os.system',
                                                         command=' '.join(touch))]),
        'a nested step': _pipeline_meta([dict(type='TestTimeAug', transforms=[[dict(
            type='subprocess.run', args=touch)]])]),
        'a step scope': _pipeline_meta([dict(type='ResizeEdge', scale=32, _scope_='os')]),
        'a file scope': _pipeline_meta([], scope='subprocess'),
        'a scope of another kind': _pipeline_meta([], scope='mmdet'),
        'an unregistered bare name': _pipeline_meta([dict(type='Popen', args=touch)]),
        'an unknown field': dict(_pipeline_meta([]), hook='subprocess.run'),
        'an unknown kind': _pipeline_meta([], kind='plugin'),
        'a pipeline that is not a list': _pipeline_meta([], test_pipeline='subprocess.run'),
        'a step that is not a dict': _pipeline_meta(['subprocess.run']),
        'classes that are not names': _pipeline_meta([], classes=[{'type': 'os.system'}]),
        'a huge string': _pipeline_meta([dict(type='ResizeEdge', scale=32, edge='x' * 10**5)]),
        'a deep nest': _pipeline_meta([dict(type='ResizeEdge', scale=32,
                                            extra=[[[[[[[[1]]]]]]]])]),
        'a detector threshold out of range': dict(_pipeline_meta([], kind='detector',
                                                                 scope='mmdet'),
                                                  score_thr=7),
        'not JSON': None,
        'NaN': None,
    }


@pytest.mark.parametrize('case', sorted(_hostile_metadata('x')))
def test_an_exported_file_never_runs_code_from_its_metadata(case, tmp_path):
    """Item 1 of the reliability round: an edited metadata that names an importable callable
    (mmengine's Registry.get imports any dotted name; a scope imports <scope>.registry) is
    refused in one line before any step is built, and nothing runs."""
    from mmvit_ext.deployment import ModelFileError, OnnxModel
    marker = tmp_path / 'ran'
    meta = _hostile_metadata(marker)[case]
    text = {'not JSON': '{"kind": ', 'NaN': '{"kind": "detector", "score_thr": NaN}'}.get(
        case, json.dumps(meta) if meta is not None else None)
    path = _identity_onnx(tmp_path / 'edited.onnx', text)
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ModelFileError, match=r'edited\.onnx: refusing its mmvit_ext metadata'):
        OnnxModel(path)(image)
    assert not marker.exists()


def test_infer_onnx_refuses_a_file_whose_pipeline_would_run_a_command(tmp_path):
    marker = tmp_path / 'ran'
    path = _identity_onnx(tmp_path / 'edited.onnx', json.dumps(
        _hostile_metadata(marker)['a dotted type: subprocess.run']))
    import cv2
    cv2.imwrite(str(tmp_path / 'img.png'), np.zeros((32, 32, 3), np.uint8))
    code, out = _run([sys.executable, 'tools/deployment/infer_onnx.py', path,
                      str(tmp_path / 'img.png')])
    _one_line_error(code, out, r"test_pipeline\[1\]\.type is 'subprocess\.run': a transform is "
                               r'named by its registered class name')
    assert not marker.exists()


def test_the_stored_pipelines_of_every_family_build_from_registered_classes():
    """The check is not a wall: every shipped demo config's test pipeline passes it and builds,
    each step an instance of a class the framework registers (no string reached mmengine)."""
    from mmengine.config import Config

    from mmvit_ext.deployment.metadata import build_test_pipeline, check_metadata
    for config, kind, scope in (
            ('configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py', 'detector', 'mmdet'),
            ('configs/_small_/dilateformer-demo_upernet_small-ade20k.py', 'segmentor', 'mmseg'),
            ('configs/_small_/dilateformer-demo_small-imagenet.py', 'classifier', 'mmpretrain'),
            ('configs/dilateformer/mask-rcnn_dilateformer-t_fpn_ms-crop-3x_coco.py', 'detector',
             'mmdet')):
        cfg = Config.fromfile(f'{REPO}/{config}')
        steps = [s.to_dict() for s in cfg.test_dataloader.dataset.pipeline]
        meta = check_metadata(json.loads(json.dumps(dict(kind=kind, scope=scope,
                                                         test_pipeline=steps))))
        pipeline = build_test_pipeline(meta)
        names = [type(t).__name__ for t in pipeline.transforms]
        assert names == [s['type'].split('.')[-1] for s in steps
                         if 'LoadAnnotations' not in s['type']], (config, names)


def _export_tool(args, timeout=600):
    return _run([sys.executable, 'tools/deployment/export_onnx.py', *args], timeout=timeout)


def test_export_tool_refuses_bad_paths_and_sizes_before_building_anything(tmp_path):
    """A missing checkpoint, --out that is a folder, and a --shape whose attention matrices would
    not fit in this machine's memory (the file used to be written, then the check tried to
    allocate 212 GB for 9 minutes): one line each, nothing written."""
    demo = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
    code, out = _export_tool([demo, str(tmp_path / 'missing.pth'), '--shape', '64', '64',
                              '--out', str(tmp_path / 'm.onnx')])
    _one_line_error(code, out, r'checkpoint .*missing\.pth not found')
    code, out = _export_tool([demo, '--shape', '64', '64', '--out', str(tmp_path)])
    _one_line_error(code, out, r'--out .* is a folder; give a file name')
    (tmp_path / 'a_file').write_text('x')
    code, out = _export_tool([demo, '--shape', '64', '64', '--out',
                              str(tmp_path / 'a_file' / 'sub' / 'm.onnx')])
    _one_line_error(code, out, r'--out .*m\.onnx cannot be written: .*a_file is a file, not a '
                               r'folder')
    (tmp_path / 'a_file').unlink()
    with socket.socket() as s:  # a port nobody listens on: the connection is refused
        s.bind(('127.0.0.1', 0))
        url = f'http://127.0.0.1:{s.getsockname()[1]}/det.pth'
    code, out = _export_tool([demo, url, '--shape', '64', '64', '--out',
                              str(tmp_path / 'u.onnx')])
    _one_line_error(code, out, rf'could not download the checkpoint {re.escape(url)}: .+')
    code, out = _export_tool(['configs/dilateformer/mask-rcnn_dilateformer-t_fpn_1x_coco.py',
                              '--shape', '4000', '6000', '--out', str(tmp_path / 'big.onnx')])
    _one_line_error(code, out, r'--shape 4000 6000 cannot be exported and checked on this '
                               r'machine: .* GiB .* Export at about --shape \d+ \d+ or smaller')
    assert not list(tmp_path.iterdir())


def test_a_random_detector_export_is_shown_not_judged_and_infer_onnx_names_bad_images(
        tmp_path):
    """Random weights: the detections are printed, not judged (a random detector scores every
    box near a tie), and the export ends OK saying so. The file is written atomically: a
    symbolic link at --out is replaced, its target untouched. infer_onnx.py names an empty image
    and a text file in one line, and pastes the masks of kept detections only."""
    victim = tmp_path / 'victim.txt'
    victim.write_text('not to be overwritten')
    out = tmp_path / 'det.onnx'
    out.symlink_to(victim)
    code, log = _export_tool(['configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py',
                              '--shape', '128', '160', '--dynamic', '--runs', '0', '--out',
                              str(out)])
    assert code == 0, log[-3000:]
    assert '(random weights: shown, not judged)' in log and 'were not judged' in log, log[-2000:]
    assert victim.read_text() == 'not to be overwritten' and not out.is_symlink()
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.jpg').write_text('hello')
    for name in ('empty.png', 'text.jpg'):
        code, log = _run([sys.executable, 'tools/deployment/infer_onnx.py', str(out),
                          str(tmp_path / name)])
        _one_line_error(code, log, rf'cannot read image .*{re.escape(name)}')
    from mmvit_ext.deployment import OnnxModel
    big = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    sample = OnnxModel(str(out))(big, score_thr=0.05)
    inst = sample.pred_instances
    assert (inst.scores >= 0.05).all() and len(inst.masks) == len(inst.scores)
    everything = OnnxModel(str(out))(big)
    assert len(everything.pred_instances.scores) >= len(inst.scores)
