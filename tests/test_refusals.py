"""What is refused and why: every bad input or fault the project guards against, as a table.

Each case feeds one bad input (a checkpoint of another model, NaN weights, a damaged file, a
diverging loss, a broken work dir, a degenerate image or setting, a bad annotation file, a path
with spaces) to the place where users meet it, and asserts the message and how the command ends.
The safe-loading tests (malicious pickles) are part of it.
"""
import contextlib
import glob
import json
import os
import os.path as osp
import random
import re
import stat
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint

from mmvit_ext.checkpoints import (CheckpointMismatchError, CorruptCheckpointError,
                                   NonFiniteCheckpointError, UnsafeCheckpointError,
                                   check_checkpoint_fits, load_pretrained, safe_torch_load)
from mmvit_ext.engine.errors import NonFiniteStateError
from mmvit_ext.engine.work_dir import find_resumable_checkpoint
from mmvit_ext.models.backbones import DGT, DilateFormer, QnAViT, SGFormer

from .conftest import REPO, run_env

DET_CFG = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
BACKBONES = (DilateFormer, SGFormer, QnAViT, DGT)


def _run(args, timeout=600, env=None):
    proc = subprocess.run(args, cwd=REPO, env=env or run_env(), capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def _one_line_error(code, out, pattern):
    """A refusal: non-zero exit, an ``error:`` line matching ``pattern``, no traceback (but
    mim's own, which reports that the tool it ran failed)."""
    assert code != 0, out[-3000:]
    assert out.count('Traceback') == out.count('subprocess.CalledProcessError: Command'), \
        out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith('error:')]
    assert lines and any(__import__('re').search(pattern, line) for line in lines), out[-3000:]


# ============================================================================ safe loading
class _RunsCommandOnLoad:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_runner_style_checkpoint_loads_without_env_var(tmp_path):
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    hub = MessageHub.get_instance('safe_load_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', np.float64(1e-3))
    model = torch.nn.Linear(3, 2)
    ckpt = dict(meta=dict(epoch=3, iter=48, seed=np.int64(7), dataset_meta=dict(classes=('a', ))),
                state_dict=model.state_dict(), message_hub=hub.state_dict(),
                optimizer=torch.optim.AdamW(model.parameters()).state_dict())
    path = tmp_path / 'epoch_3.pth'
    torch.save(ckpt, path)
    loaded = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert loaded['meta']['iter'] == 48
    assert loaded['message_hub']['log_scalars']['train/loss'].mean() == 0.5
    other = torch.nn.Linear(3, 2)
    load_checkpoint(other, str(path))
    assert torch.equal(other.weight, model.weight)


def test_checkpoint_that_runs_a_command_is_refused_naming_the_type(tmp_path):
    import pickle
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=dict(w=torch.zeros(1)), x=_RunsCommandOnLoad(marker)), path)
    # our loaders: the type named, and a way out for a trusted file
    with pytest.raises(UnsafeCheckpointError, match=r'pickles posix\.system.*resave_checkpoint'):
        safe_torch_load(str(path))
    with pytest.raises(UnsafeCheckpointError, match=r'pickles posix\.system'):
        load_pretrained(DilateFormer(), str(path))
    # mmengine's own loader, for every model in the process: refused too (by torch's allow-list
    # on torch >= 2.6, by the loader registered with CheckpointLoader on older torch)
    with pytest.raises(pickle.UnpicklingError, match=r'posix\.system'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(1, 1), str(path))
    assert not marker.exists()
    with pytest.raises(Exception):  # plain torch.load is not opened up either
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_getattr_is_restricted(tmp_path):
    import pickle
    from mmengine.logging import HistoryBuffer

    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, '__init__'))

    path = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"getattr\(.*'__init__'\)"):
        safe_torch_load(str(path))
    with pytest.raises(pickle.UnpicklingError, match='__init__'):
        CheckpointLoader.load_checkpoint(str(path))


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match='downloaded by hand'):
        load_pretrained(DilateFormer(), str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='can not be found'):  # mmengine's own message
        CheckpointLoader.load_checkpoint(str(tmp_path / 'nope.pth'))


def test_url_checkpoints_go_through_the_safe_loader(tmp_path, monkeypatch):
    """https:// and torchvision:// (mmengine resolves both to torch.hub's cache): a cached
    malicious file is refused, a Runner-style checkpoint loads."""
    from mmengine.runner.checkpoint import get_torchvision_models
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'hub'))
    cache = tmp_path / 'hub' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    marker = tmp_path / 'pwned'
    torch.save(dict(x=_RunsCommandOnLoad(marker)), cache / 'evil.pth')
    resnet = osp.basename(get_torchvision_models()['resnet18'])
    torch.save(dict(x=_RunsCommandOnLoad(marker)), cache / resnet)
    for url in ('https://example.invalid/weights/evil.pth', 'torchvision://resnet18'):
        with pytest.raises(UnsafeCheckpointError, match='posix.system'):
            CheckpointLoader.load_checkpoint(url, map_location='cpu')
        with pytest.raises(UnsafeCheckpointError):
            load_checkpoint(torch.nn.Linear(1, 1), url)
    assert not marker.exists()
    torch.save({'state_dict': torch.nn.Linear(1, 1).state_dict(), 'meta': {'seed': np.int64(1)}},
               cache / 'good.pth')
    model = torch.nn.Linear(1, 1)
    load_checkpoint(model, 'https://example.invalid/weights/good.pth')


def test_protocol_4_and_legacy_checkpoints_load(tmp_path):
    sd = torch.nn.Linear(2, 2).state_dict()
    torch.save({'state_dict': sd}, tmp_path / 'p4.pth', pickle_protocol=4)
    torch.save({'state_dict': sd}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False,
               pickle_protocol=4)
    for name in ('p4.pth', 'legacy.pth'):
        loaded = safe_torch_load(str(tmp_path / name))
        assert torch.equal(loaded['state_dict']['weight'], sd['weight'])
    import pickle
    with open(tmp_path / 'plain.pkl', 'wb') as f:  # pickle.dump, not torch.save: its own message
        pickle.dump({'w': [1.0, 2.0]}, f, protocol=4)
    with pytest.raises(CorruptCheckpointError, match='written by pickle.dump, not by torch.save'):
        safe_torch_load(str(tmp_path / 'plain.pkl'))
    # the same through mmengine's own loader (the frameworks' tools, load_from, --resume), which
    # ended in torch's 'Unsupported operand 149' traceback on torch >= 2.6
    for name in ('p4.pth', 'legacy.pth'):
        loaded = CheckpointLoader.load_checkpoint(str(tmp_path / name), map_location='cpu')
        assert torch.equal(loaded['state_dict']['weight'], sd['weight'])
    with pytest.raises(CorruptCheckpointError, match='written by pickle.dump, not by torch.save'):
        CheckpointLoader.load_checkpoint(str(tmp_path / 'plain.pkl'))


def test_harmless_standard_types_in_meta_load(tmp_path):
    import datetime
    import pathlib
    path = tmp_path / 'meta.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    meta=dict(work_dir=pathlib.Path('/runs/x'), time=datetime.datetime(2026, 1, 1))),
               path)
    assert safe_torch_load(str(path))['meta']['work_dir'] == pathlib.Path('/runs/x')


class Settings:  # a custom class in meta (importable in this process, not in the tool's)

    def __init__(self):
        self.lr = 0.1


def test_unsafe_refusal_gives_a_working_way_out(tmp_path):
    path, safe = tmp_path / 'custom.pth', tmp_path / 'safe.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(2)), meta=dict(cfg=Settings())), path)
    with pytest.raises(UnsafeCheckpointError, match=r'pickles tests\.test_refusals\.Settings'):
        safe_torch_load(str(path))
    code, out = _run([sys.executable, 'tools/misc/resave_checkpoint.py', str(path), str(safe),
                      '--trust-pickle'])
    assert code == 0 and 'replaced by its text: /meta/cfg' in out, out
    loaded = safe_torch_load(str(safe))
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))
    assert "'lr': 0.1" in loaded['meta']['cfg']
    code, out = _run([sys.executable, 'tools/misc/resave_checkpoint.py', str(path), str(safe)])
    _one_line_error(code, out, 'pickles tests.test_refusals.Settings')


# ============================================================================ damaged files
def _damaged_files(tmp_path):
    """name -> (path, expected message) of files that are not checkpoints."""
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.randn(64)}, good)
    data = good.read_bytes()
    files = {
        'truncated': (data[:len(data) // 2], 'damaged or truncated torch checkpoint'),
        'empty': (b'', r'is empty \(0 bytes\)'),
        'text': (b'<html>Not Found</html>\n', r"is a text file, not a checkpoint \(it starts with "
                 r"'<html>Not Found"),
        'random': (bytes(random.Random(0).randrange(256) | 0x01 for _ in range(4096)),
                   'not a checkpoint of a known format'),
    }
    out = {}
    for name, (content, message) in files.items():
        path = tmp_path / f'{name}.pth'
        path.write_bytes(content)
        out[name] = (str(path), message)
    return out


@pytest.mark.parametrize('kind', ['truncated', 'empty', 'text', 'random'])
def test_damaged_files_are_reported_as_damage_not_as_unsafe(kind, tmp_path):
    path, message = _damaged_files(tmp_path)[kind]
    with pytest.raises(CorruptCheckpointError, match=message):
        safe_torch_load(path)
    with pytest.raises(CorruptCheckpointError, match=message):
        load_pretrained(DilateFormer(), path)


# ============================================================================ converters
def _flax_file(tmp_path):
    from tests.test_models.official_layouts import pack_msgpack
    path = tmp_path / 'flax_checkpoint'
    path.write_bytes(pack_msgpack({'params': {'Dense_0': {'kernel': np.ones((2, 2), 'f4')}}}))
    return str(path)


def _dgt_file(tmp_path):
    path = tmp_path / 'dgt_t.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in DGT('tiny').state_dict().items()}},
               path)
    return str(path)


CONVERTERS = {
    'dilateformer': ['tools/model_converters/dilateformer2mmvit.py'],
    'sgformer': ['tools/model_converters/sgformer2mmvit.py'],
    'qna': ['tools/model_converters/qna2mmvit.py', '--arch', 'tiny'],
}


def _convert(converter, src, dst):
    """Run a converter's main in this process (as its command line does): (exit code, output)."""
    import contextlib
    import io
    import runpy
    script, *extra = CONVERTERS[converter]
    argv, sys.argv = sys.argv, [script, src, dst, *extra]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            runpy.run_path(osp.join(REPO, script), run_name='__main__')
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
        if isinstance(e.code, str):
            err.write(e.code + '\n')
    finally:
        sys.argv = argv
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize('converter', sorted(CONVERTERS))
def test_converters_refuse_bad_files_in_one_line_and_write_nothing(converter, tmp_path):
    cases = {name: (path, msg) for name, (path, msg) in _damaged_files(tmp_path).items()}
    if converter == 'qna':
        good_torch = str(tmp_path / 'good.pth')
        cases['wrong format'] = (good_torch, 'is a torch checkpoint, not a Flax msgpack file')
        # a msgpack file of other content: names the missing tree
        cases['other content'] = (_flax_file(tmp_path), 'not an official QnA-ViT checkpoint')
    else:
        cases['wrong format'] = (_flax_file(tmp_path), 'is a Flax msgpack file')
        cases['other family'] = (_dgt_file(tmp_path), r'not an official .*it holds a DGT-T '
                                 r"backbone in mmvit_ext's layout already")
    dst = tmp_path / 'out' / 'converted.pth'
    for name, (src, message) in cases.items():
        code, out = _convert(converter, src, str(dst))
        assert code != 0 and 'Traceback' not in out, (name, out)
        errors = [line for line in out.splitlines() if line.startswith('error:')]
        assert len(errors) == 1 and __import__('re').search(message, errors[0]), (name, out)
        assert not dst.exists() and not osp.exists(f'{dst}.part'), name


def test_converter_output_problems_are_named_as_the_outputs(tmp_path):
    """A good official file and an output that cannot be written: the message blames the
    output, not the source."""
    from tests.test_models.official_layouts import dilateformer_official_state_dict
    src = tmp_path / 'official.pth'
    torch.save({'model': dilateformer_official_state_dict('tiny')}, src)
    (tmp_path / 'a_dir').mkdir()
    (tmp_path / 'a_file').write_text('x')
    cases = {str(tmp_path / 'a_dir'): r'the output .*a_dir is a directory; give a file name',
             str(tmp_path / 'a_file' / 'out.pth'): r'could not write the output .*a_file/out\.pth'
                                                    r': .*official\.pth itself was read and '
                                                    r'converted fine'}
    for dst, message in cases.items():
        code, out = _convert('dilateformer', str(src), dst)
        errors = [line for line in out.splitlines() if line.startswith('error:')]
        assert code == 1 and len(errors) == 1 and re.search(message, errors[0]), out[-2000:]
        assert 'is not an official' not in errors[0]


def test_converter_paths_that_would_lose_data_are_refused_or_replaced(tmp_path):
    """A folder or a device as the source is named; the official file as the output (directly
    or through a link) is refused and left as it was; an output that is a symbolic link is
    replaced by the converted file, its target untouched."""
    from tests.test_models.official_layouts import dilateformer_official_state_dict
    src = tmp_path / 'official.pth'
    torch.save({'model': dilateformer_official_state_dict('tiny')}, src)
    original = src.read_bytes()
    (tmp_path / 'link_to_src.pth').symlink_to(src)
    (tmp_path / 'folder').mkdir()
    cases = {
        (str(tmp_path / 'folder'), str(tmp_path / 'o.pth')): r'folder is a directory; give the '
                                                             r'checkpoint file inside it',
        ('/dev/null', str(tmp_path / 'o.pth')): r'/dev/null is not a regular file \(a device',
        (str(src), str(src)): r'the output .*official\.pth is the source file itself',
        (str(src), str(tmp_path / 'link_to_src.pth')): r'link_to_src\.pth is the source file '
                                                        r'itself',
    }
    for (source, dst), message in cases.items():
        code, out = _convert('dilateformer', source, dst)
        errors = [line for line in out.splitlines() if line.startswith('error:')]
        assert code == 1 and len(errors) == 1 and re.search(message, errors[0]), out[-2000:]
    assert src.read_bytes() == original and not (tmp_path / 'o.pth').exists()
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    (tmp_path / 'out.pth').symlink_to(victim)
    code, out = _convert('dilateformer', str(src), str(tmp_path / 'out.pth'))
    assert code == 0, out[-2000:]
    assert victim.read_text() == 'keep me' and not (tmp_path / 'out.pth').is_symlink()
    assert 'backbone.stem.0.weight' in torch.load(tmp_path / 'out.pth', weights_only=True)


def test_converter_command_line_exit_status_and_no_traceback(tmp_path):
    src = _damaged_files(tmp_path)['truncated'][0]
    code, out = _run([sys.executable, 'tools/model_converters/sgformer2mmvit.py', src,
                      str(tmp_path / 'x.pth')])
    _one_line_error(code, out, 'damaged or truncated')


def test_flax_reader_fuzz_raises_only_its_own_error():
    """Random truncations and byte flips of a valid file: FlaxMsgpackError or a value, never
    RecursionError, struct.error, a negative byte count or a silently short array."""
    from mmvit_ext.models.converters.flax_msgpack import FlaxMsgpackError, read_flax_msgpack
    from tests.test_models.official_layouts import pack_msgpack
    tree = {'params': {f'Block_{i}': {'kernel': np.random.RandomState(i).randn(3, 5).astype('f4'),
                                      'scale': np.full(2, i, 'f4'), 'name': 'abc' * i}
                       for i in range(6)}, 'step': 7}
    data = pack_msgpack(tree)
    rng = random.Random(0)
    outcomes = {'ok': 0, 'error': 0}
    for i in range(1500):
        b = bytearray(data)
        if i % 3 == 0:
            b = b[:rng.randrange(len(b))]
        else:
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            read_flax_msgpack(bytes(b))
            outcomes['ok'] += 1
        except FlaxMsgpackError:
            outcomes['error'] += 1
    assert outcomes['error'] > 500
    with pytest.raises(FlaxMsgpackError, match='nested deeper'):
        read_flax_msgpack(b'\x91' * 5000 + b'\x00')
    with pytest.raises(FlaxMsgpackError, match='truncated'):
        read_flax_msgpack(b'\xdd\xff\xff\xff\xff')  # an array of 4 billion elements, no data


def test_unknown_entries_of_an_official_file_are_listed(tmp_path):
    from tests.test_models.official_layouts import pack_msgpack, qna_official_params
    tree = qna_official_params('tiny', num_classes=10)
    tree['QnAStage_0']['QnA_Block_1']['Extra_0'] = {'kernel': np.ones(3, 'f4')}
    tree['Unknown_0'] = {'bias': np.zeros(2, 'f4')}
    src = tmp_path / 'checkpoint_1'
    src.write_bytes(pack_msgpack({'params': tree}))
    code, out = _convert('qna', str(src), str(tmp_path / 'o.pth'))
    assert code != 0 and 'unexpected keys (2)' in out
    assert 'Extra_0/kernel' in out and 'Unknown_0/bias' in out


# ============================================================================ checkpoints vs model
def test_another_family_or_variant_is_named_in_words():
    dgt = {'backbone.' + k: v for k, v in DGT('tiny').state_dict().items()}
    with pytest.raises(CheckpointMismatchError,
                       match=r'holds a DGT-T backbone; the config builds DilateFormer-S'):
        check_checkpoint_fits(DilateFormer('small'), dgt, 'dgt.pth', 'strict')
    tiny = {'backbone.' + k: v for k, v in DilateFormer('tiny').state_dict().items()}

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = DilateFormer('small')

    with pytest.raises(CheckpointMismatchError, match=r'(?s)\d+ missing .*holds a DilateFormer-T '
                       r'backbone; the config builds DilateFormer-S.*allow_partial_load = True'):
        check_checkpoint_fits(Detector(), tiny, 'tiny.pth', 'strict')
    check_checkpoint_fits(Detector(), tiny, 'tiny.pth', 'partial')  # the opt-out: logs
    with pytest.raises(CheckpointMismatchError, match=r'The backbone itself does not fit'):
        check_checkpoint_fits(Detector(), tiny, 'tiny.pth', 'finetune')  # fine-tuning: not this


def test_init_cfg_refuses_another_family_and_nan_weights(tmp_path):
    path = _dgt_file(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r'holds a DGT-T backbone; the config '
                       r'builds SG-Former-S'):
        load_pretrained(SGFormer('small'), path)
    sd = QnAViT('tiny').state_dict()
    sd['stages.0.0.attn.query'][0, 0] = float('nan')
    sd['stem.weight'][0, 0, 0, 0] = float('inf')
    torch.save(sd, tmp_path / 'nan.pth')
    model = QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nan.pth')))
    with pytest.raises(NonFiniteCheckpointError, match=r'NaN/Inf values in 2 of \d+ tensors: '
                       r'stages\.0\.0\.attn\.query, stem\.weight'):
        model.init_weights()


@pytest.fixture(scope='module')
def det_checkpoints(tmp_path_factory):
    """A DGT-T detector checkpoint and a NaN copy of the demo detector's weights."""
    from mmengine.config import Config

    from mmvit_ext.apis import build_model_from_cfg
    root = tmp_path_factory.mktemp('ckpts')
    torch.manual_seed(0)
    model, _ = build_model_from_cfg(Config.fromfile(osp.join(REPO, DET_CFG)))
    sd = model.state_dict()
    other = {k: v for k, v in sd.items() if not k.startswith('backbone.')}
    other.update({'backbone.' + k: v for k, v in DGT('tiny').state_dict().items()})
    torch.save({'state_dict': other, 'meta': {}}, root / 'dgt_detector.pth')
    sd = {k: v.clone() for k, v in sd.items()}
    sd['backbone.stem.0.weight'][0] = float('nan')
    torch.save({'state_dict': sd, 'meta': {}}, root / 'nan_detector.pth')
    return dict(dgt=str(root / 'dgt_detector.pth'), nan=str(root / 'nan_detector.pth'))


@contextlib.contextmanager
def _serving(folder):
    """An HTTP server on 127.0.0.1 serving ``folder``; yields its base URL."""
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()


def _data_options(small_data):
    root = small_data['coco'] + '/'
    return [f'{p}_dataloader.dataset.data_root={root}' for p in ('train', 'val', 'test')] + [
        f'{p}_evaluator.ann_file={root}annotations/instances_val.json' for p in ('val', 'test')]


@pytest.mark.parametrize('case', ['test.py other family', 'test.py NaN', 'train.py load_from',
                                  'mim test other family', 'mim test mmdet other family',
                                  'test.py a pickle that runs code', 'train.py --resume a pickle '
                                  'that runs code', 'test.py over http'])
def test_checkpoint_entry_points_refuse_with_exit_1(case, det_checkpoints, small_data, tmp_path):
    opts = _data_options(small_data)
    marker = tmp_path / 'ran'
    if 'runs code' in case:  # our one line, not torch's traceback advising weights_only=False
        evil = tmp_path / 'evil.pth'
        torch.save(dict(state_dict={}, x=_RunsCommandOnLoad(marker)), evil)
        cmd = ([sys.executable, 'tools/test.py', DET_CFG, str(evil)] if 'test.py' in case else
               [sys.executable, 'tools/train.py', DET_CFG, '--resume', str(evil)])
        code, out = _run(cmd + ['--work-dir', str(tmp_path / 'w'), '--cfg-options', *opts])
        _one_line_error(code, out, r'Refusing to load .*evil\.pth: it pickles posix\.system')
        assert 'weights_only' not in out and not marker.exists(), out[-3000:]
        return
    if case == 'test.py over http':  # mmdet's tools take URLs: through the safe loader too
        with _serving(osp.dirname(det_checkpoints['dgt'])) as url:
            code, out = _run([sys.executable, 'tools/test.py', DET_CFG,
                              f'{url}/{osp.basename(det_checkpoints["dgt"])}', '--work-dir',
                              str(tmp_path), '--cfg-options', *opts],
                             env=dict(run_env(), TORCH_HOME=str(tmp_path / 'hub')))
        _one_line_error(code, out, r'holds a DGT-T backbone; the config builds DilateFormer')
        return
    if case.startswith('test.py'):
        ckpt = det_checkpoints['nan' if 'NaN' in case else 'dgt']
        cmd = [sys.executable, 'tools/test.py', DET_CFG, ckpt, '--work-dir', str(tmp_path),
               '--cfg-options', *opts]
    elif case.startswith('train.py'):
        cmd = [sys.executable, 'tools/train.py', DET_CFG, '--work-dir', str(tmp_path),
               '--cfg-options', *opts, f'load_from={det_checkpoints["dgt"]}']
    else:  # mim test mmvit_ext runs our tools/test.py; mim test mmdet runs mmdet's
        mim = osp.join(osp.dirname(sys.executable), 'mim')
        package = 'mmdet' if 'mmdet' in case else 'mmvit_ext'
        cmd = [mim, 'test', package, osp.join(REPO, DET_CFG), '--checkpoint',
               det_checkpoints['dgt'], '--work-dir', str(tmp_path), '--cfg-options', *opts]
    code, out = _run(cmd)
    if 'mmdet' in case:
        # mmdet's own tool prints its traceback (nothing of ours changes how it ends); the
        # refusal is the same, on its last line, and the run ends without testing anything
        assert code != 0 and re.search(r'CheckpointMismatchError: checkpoint .* holds a DGT-T '
                                       r'backbone; the config builds DilateFormer', out), out[-3000:]
        assert 'coco/bbox_mAP' not in out
    elif 'NaN' in case:
        _one_line_error(code, out, r'NaN/Inf values in 1 of \d+ tensors: backbone\.stem\.0\.weight')
    else:
        _one_line_error(code, out, r'holds a DGT-T backbone; the config builds DilateFormer '
                        r'\(custom arch\).*allow_partial_load')
    assert not glob.glob(str(tmp_path / '**' / '*.pth'), recursive=True)


@pytest.mark.parametrize('case', ['--tta on Mask R-CNN', '--amp without a GPU'])
def test_options_the_machine_or_model_cannot_honour(case, det_checkpoints, small_data, tmp_path):
    if case.startswith('--tta'):
        cmd = ['tools/test.py', DET_CFG, det_checkpoints['dgt'], '--tta']
        pattern = r'--tta: mmdet 3.3 merges test-time augmentations of boxes only'
    else:
        cmd = ['tools/train.py', DET_CFG, '--amp']
        pattern = r'--amp needs a CUDA GPU'
    code, out = _run([sys.executable, *cmd, '--work-dir', str(tmp_path), '--cfg-options',
                      *_data_options(small_data)])
    _one_line_error(code, out, pattern)


# ============================================================================ training runs
def _runner(small_data, work_dir, hooks=(), seed=123, resume=False, epochs=2, ckpt_every=3):
    """The demo detector on the small COCO set: 8 images, batch 2 -> 4 iterations per epoch."""
    from mmengine.config import Config
    from mmengine.registry import RUNNERS
    cfg = Config.fromfile(osp.join(REPO, DET_CFG))
    cfg.merge_from_dict(dict(a.split('=', 1) for a in _data_options(small_data)))
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type='GuardedEpochBasedTrainLoop', max_epochs=epochs, val_interval=100)
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='SafeCheckpointHook', interval=ckpt_every,
                                        by_epoch=False, max_keep_ckpts=-1)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.custom_hooks = list(hooks)
    cfg.work_dir = str(work_dir)
    cfg.randomness = dict(seed=seed)
    cfg.resume = resume
    cfg.launcher = 'none'
    # One process builds several runners here. mmengine keeps one visualizer per name (mmdet's
    # configs name it 'visualizer') and one logger per experiment name (the second the runner
    # started): a later runner would get the first one's, writing into that test's work dir
    unique = f'{osp.basename(str(work_dir))}_{uuid.uuid4().hex[:8]}'
    cfg.experiment_name = cfg.visualizer.name = unique
    return RUNNERS.build(cfg)  # the config's GuardedRunner


class _Record:
    """Records (iteration, image ids) of every training step; can interrupt or poison."""

    def __init__(self, log, stop_after=None, nan_at=None):
        self.log, self.stop_after, self.nan_at = log, stop_after, nan_at
        self.priority = 'LOWEST'

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.log.append((runner.iter, [s.img_id for s in data_batch['data_samples']]))
        if self.nan_at is not None and runner.iter == self.nan_at:
            with torch.no_grad():
                next(runner.model.backbone.parameters()).fill_(float('nan'))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if self.stop_after is not None and runner.iter + 1 == self.stop_after:
            raise KeyboardInterrupt('simulated kill')


def _hook(log, **kw):
    from mmengine.hooks import Hook
    record = _Record(log, **kw)
    hook = Hook()
    hook.priority = 'LOWEST'
    hook.before_train_iter = record.before_train_iter
    hook.after_train_iter = record.after_train_iter
    return hook


def test_resume_inside_an_epoch_neither_repeats_nor_skips(small_data, tmp_path):
    full = []
    runner = _runner(small_data, tmp_path / 'full')
    runner.register_custom_hooks([_hook(full)])
    runner.train()
    assert [i for i, _ in full] == list(range(8))
    part = []
    runner = _runner(small_data, tmp_path / 'cut')
    runner.register_custom_hooks([_hook(part, stop_after=5)])
    with pytest.raises(KeyboardInterrupt):
        runner.train()
    assert osp.isfile(tmp_path / 'cut' / 'iter_3.pth')  # inside epoch 1 (4 iterations each)
    resumed = []
    runner = _runner(small_data, tmp_path / 'cut', seed=None, resume=True)  # a fresh seed
    runner.register_custom_hooks([_hook(resumed)])
    runner.train()
    assert [i for i, _ in resumed] == [3, 4, 5, 6, 7] and runner.iter == 8
    assert resumed == full[3:]  # the same images, in the same order


def test_resume_falls_back_to_the_newest_intact_checkpoint(small_data, tmp_path, capsys):
    runner = _runner(small_data, tmp_path, epochs=2, ckpt_every=2)
    runner.train()
    assert sorted(os.listdir(tmp_path)).count('last_checkpoint') == 1
    iter8 = tmp_path / 'iter_8.pth'
    iter8.write_bytes(iter8.read_bytes()[:1000])  # truncated by a crash while writing
    log = []
    runner = _runner(small_data, tmp_path, epochs=3, resume=True, ckpt_every=100)
    runner.register_custom_hooks([_hook(log)])
    runner.train()
    assert log[0][0] == 6  # iter_6.pth, the newest intact one
    assert 'newest intact checkpoint' in capsys.readouterr().out + _log_text(tmp_path)
    # lost pointer and a damaged newest file (the resumed run's last one): the next intact one
    (tmp_path / 'last_checkpoint').unlink()
    iter12 = tmp_path / 'iter_12.pth'
    iter12.write_bytes(iter12.read_bytes()[:1000])
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_6.pth')
    for path in glob.glob(str(tmp_path / '*.pth')):  # every checkpoint broken: refuse
        with open(path, 'r+b') as f:
            f.truncate(100)
    with pytest.raises(CorruptCheckpointError, match='no checkpoint in .* can be read'):
        find_resumable_checkpoint(str(tmp_path))


def test_resume_takes_the_newest_by_what_the_checkpoints_record(small_data, tmp_path):
    """Not by the largest number in a file name: a backup of iteration 4 named
    ``backup_epoch_1_20261204.pth`` beside iter_4/8/12 (and no last_checkpoint) had been chosen,
    epochs 2-3 retrained and iter_12.pth overwritten. A checkpoint refused for NaN optimizer
    state names the newest intact one (not itself)."""
    import shutil
    _runner(small_data, tmp_path, epochs=3, ckpt_every=4).train()
    shutil.copy(tmp_path / 'iter_4.pth', tmp_path / 'backup_epoch_1_20261204.pth')
    (tmp_path / 'last_checkpoint').unlink()
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_12.pth')
    ckpt = safe_torch_load(str(tmp_path / 'iter_12.pth'))
    state = next(iter(ckpt['optimizer']['state'].values()))
    state['exp_avg'].view(-1)[0] = float('nan')
    torch.save(ckpt, tmp_path / 'iter_12.pth')
    with pytest.raises(NonFiniteStateError, match=r'iter_12\.pth holds NaN/Inf optimizer state'
                       r'.*The newest intact one is .*iter_8\.pth: resume with --resume '
                       r'.*iter_8\.pth'):
        _runner(small_data, tmp_path, epochs=4, resume=True).train()


def _log_text(work_dir):
    return ''.join(open(p).read() for p in glob.glob(str(work_dir / '*' / '*.log')))


def test_non_finite_loss_stops_before_that_state_is_saved(small_data, tmp_path):
    log = []
    runner = _runner(small_data, tmp_path, ckpt_every=1)
    runner.register_custom_hooks([_hook(log, nan_at=2)])
    with pytest.raises(NonFiniteStateError, match=r'training stopped at iteration 3: the loss is '
                       r"nan; non-finite terms: \{'loss_rpn_cls"):
        runner.train()
    assert sorted(osp.basename(p) for p in glob.glob(str(tmp_path / '*.pth'))) == \
        ['iter_1.pth', 'iter_2.pth']
    assert (tmp_path / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')


def test_nan_checkpoint_is_refused_on_resume(small_data, tmp_path):
    runner = _runner(small_data, tmp_path, epochs=1, ckpt_every=2)
    runner.train()
    ckpt = safe_torch_load(str(tmp_path / 'iter_4.pth'))
    ckpt['state_dict']['rpn_head.rpn_conv.weight'][0] = float('nan')
    torch.save(ckpt, tmp_path / 'iter_4.pth')
    with pytest.raises(NonFiniteCheckpointError, match=r'rpn_head\.rpn_conv\.weight'):
        _runner(small_data, tmp_path, epochs=2, resume=True).train()


# ============================================================================ inputs, settings
@pytest.mark.parametrize('backbone', BACKBONES, ids=lambda c: c.__name__)
def test_degenerate_images_and_settings(backbone):
    m = backbone(out_indices=(1, 3)).eval()
    with pytest.raises(ValueError, match=r'an image of 0x0 pixels'):
        m(torch.zeros(1, 3, 0, 0))
    with pytest.raises(ValueError, match='built for 3-channel images'):
        m(torch.zeros(1, 1, 32, 32))
    with torch.no_grad():
        empty = m(torch.zeros(0, 3, 100, 75))
    assert [tuple(t.shape) for t in empty] == [(0, m.embed_dims[1], 13, 10),
                                               (0, m.embed_dims[3], 4, 3)]
    for rate in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r'drop_path_rate must be in \[0, 1\)'):
            backbone(drop_path_rate=rate)
    with pytest.raises(ValueError, match='name a stage twice'):
        backbone(out_indices=(0, 1, 1, 3))
    with pytest.raises(ValueError, match=r"does not use: \['embed_dim'\]; the valid keys are"):
        backbone(arch=dict(backbone.arch_zoo[next(iter(backbone.arch_zoo))], embed_dim=3))


# ============================================================================ data
def _coco(tmp_path, small_data, edit):
    ann = json.load(open(osp.join(small_data['coco'], 'annotations', 'instances_train.json')))
    edit(ann)
    path = tmp_path / 'instances_train.json'
    path.write_text(json.dumps(ann))
    return ann, str(path)


def _coco_dataset(small_data, path, type_='CheckedCocoDataset'):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    return DATASETS.build(dict(
        type=type_, data_root=small_data['coco'], ann_file=path, data_prefix=dict(img='train/'),
        metainfo=dict(classes=('square', 'circle', 'triangle')),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations', with_bbox=True, with_mask=True)]))


@contextlib.contextmanager
def _logged():
    """What mmengine's current logger writes inside the block."""
    import io
    import logging

    from mmengine.logging import MMLogger
    buffer, logger = io.StringIO(), MMLogger.get_current_instance()
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


_SEGMENTATION_PROBLEMS = {
    'empty segmentation': [],
    'one-point polygon': [[10.0, 10.0]],
    'partial RLE': {'size': [64, 64]},
}


@pytest.mark.parametrize('problem', sorted(_SEGMENTATION_PROBLEMS))
def test_degenerate_segmentations_are_ignored_as_mmdet_ignores_them(problem, small_data,
                                                                     tmp_path):
    """The instance is ignored (its box too), one warning counts it; mmdet itself ignores
    degenerate polygons and partial RLE in LoadAnnotations, and crashes on an empty one."""
    def edit(ann):
        ann['annotations'][2]['segmentation'] = _SEGMENTATION_PROBLEMS[problem]

    ann, path = _coco(tmp_path, small_data, edit)
    bad = ann['annotations'][2]
    with _logged() as log:
        dataset = _coco_dataset(small_data, path)
    out = log.getvalue()
    assert re.search(rf'1 annotation\(s\) with an unusable "segmentation" are ignored.*'
                     rf'annotation id {bad["id"]} of image id {bad["image_id"]}', out), out
    index = next(i for i in range(len(dataset))
                 if dataset.get_data_info(i)['img_id'] == bad['image_id'])
    sample = dataset[index]
    assert sample['gt_ignore_flags'].sum() == 1  # the one bad instance, nothing else
    assert len(sample['gt_masks']) == len(sample['gt_bboxes'])
    if problem != 'empty segmentation':  # plain mmdet: the same instance ignored
        plain = _coco_dataset(small_data, path, type_='CocoDataset')[index]
        assert np.array_equal(plain['gt_ignore_flags'], sample['gt_ignore_flags'])


@pytest.mark.parametrize('problem', ['no annotations', 'every box 0x0'])
def test_coco_files_that_cannot_train_are_refused_naming_why(problem, small_data, tmp_path):
    from mmvit_ext.datasets.coco_checks import CocoAnnotationError

    def edit(ann):
        if problem == 'no annotations':
            ann['annotations'] = []
        for a in ann['annotations']:
            a['bbox'][2] = a['bbox'][3] = 0
    _, path = _coco(tmp_path, small_data, edit)
    why = r'0 annotations: no image has an annotation' if problem == 'no annotations' else \
        r'\d+ annotations: \d+ of the \d+ boxes are smaller than 1x1 pixel'
    with pytest.raises(CocoAnnotationError, match=r'instances_train\.json: no training image '
                       rf'keeps a usable box \(8 images, {why}'):
        _coco_dataset(small_data, path)


def test_coco_problem_ends_tools_train_in_one_line(small_data, tmp_path):
    def zero_boxes(ann):
        for a in ann['annotations']:
            a['bbox'][2] = a['bbox'][3] = 0

    _, path = _coco(tmp_path, small_data, zero_boxes)
    code, out = _run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir', str(tmp_path / 'w'),
                      '--cfg-options', *_data_options(small_data),
                      f'train_dataloader.dataset.ann_file={path}'])
    _one_line_error(code, out, r'no training image keeps a usable box .* boxes are smaller than '
                    r'1x1 pixel')


# ============================================================================ launch scripts
@pytest.mark.parametrize('script,args,expected', [
    ('dist_train.sh', ['my configs/a b.py', '2', '--work-dir', 'runs/x y'],
     ['tools/train.py', 'my configs/a b.py', '--launcher', 'pytorch', '--work-dir', 'runs/x y']),
    ('dist_test.sh', ['my configs/a b.py', 'ckpts/e 1.pth', '1', '--out', 'r s.pkl'],
     ['tools/test.py', 'my configs/a b.py', 'ckpts/e 1.pth', '--launcher', 'pytorch', '--out',
      'r s.pkl']),
    ('slurm_train.sh', ['part', 'job', 'my configs/a b.py', 'work dir/x', '--amp'],
     ['tools/train.py', 'my configs/a b.py', '--work-dir=work dir/x', '--launcher=slurm',
      '--amp']),
    ('slurm_test.sh', ['part', 'job', 'my configs/a b.py', 'ck pts/e.pth', '--out', 'a b.pkl'],
     ['tools/test.py', 'my configs/a b.py', 'ck pts/e.pth', '--launcher=slurm', '--out',
      'a b.pkl']),
])
def test_launch_scripts_keep_arguments_with_spaces(script, args, expected, tmp_path):
    """A stand-in python (and srun) records the argument vector the script builds."""
    record = tmp_path / 'argv.json'
    fake = tmp_path / 'fake_python'
    fake.write_text('#!/usr/bin/env python3\nimport json, sys\n'
                    f'json.dump(sys.argv[1:], open({str(record)!r}, "w"))\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    srun = tmp_path / 'srun'  # drops its own options, runs the command
    srun.write_text('#!/usr/bin/env bash\nwhile [[ $1 == -* ]]; do [[ $1 == -p ]] && shift; '
                    'shift; done\nexec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = dict(run_env(), PYTHON=str(fake), PATH=f'{tmp_path}:{os.environ["PATH"]}')
    code, out = _run(['bash', f'tools/{script}', *args], env=env)
    assert code == 0, out
    argv = json.loads(record.read_text())
    argv = [a.replace(REPO + '/', '').replace('tools/../', '') for a in argv]
    start = next(i for i, a in enumerate(argv) if a.endswith(expected[0]))
    assert argv[start].endswith(expected[0]) and argv[start + 1:] == expected[1:], argv


# ============================================================================ config values
_BAD_VALUES = {
    'arch=huge': ('model.backbone.arch=huge', r"unknown DilateFormer arch 'huge'; choose one of"),
    'arch=3': ('model.backbone.arch=3', r'DilateFormer arch must be a zoo name \(str\) or a '
               r'dict, got int 3'),
    'drop_path_rate=1.0': ('model.backbone.drop_path_rate=1.0',
                           r'drop_path_rate must be in \[0, 1\), got 1.0'),
    'misspelt key': ('model.backbone.drop_path_rat=0.1', r"model\.backbone\.drop_path_rat: "
                     r"DilateFormer has no argument 'drop_path_rat' \(did you mean "
                     r"'drop_path_rate'"),
    'out_indices=(0.5,)': ('model.backbone.out_indices=(0.5,)', r'out_indices must be stage '
                           r'numbers \(ints in \[0, 3\].*got \(0\.5,\)'),
    'max_epochs=two': ('train_cfg.max_epochs=two', r"train_cfg\.max_epochs='two' cannot work: "
                       r'it must be a whole number of epochs >= 1'),
    'batch_size=0': ('train_dataloader.batch_size=0', r'train_dataloader\.batch_size=0 cannot '
                     r'work: it must be a whole number of images per process >= 1'),
    'lr=abc': ('optim_wrapper.optimizer.lr=abc', r"optim_wrapper\.optimizer\.lr='abc' cannot "
               r'work: it must be a number >= 0'),
    'dilations=[]': ('model.backbone.dilations=[]', r'dilations=\[\]: give one whole-number '
                     r'dilation >= 1 per head group'),
    'dilations=[0,1,2]': ('model.backbone.dilations=[0,1,2]', r'every dilation must be a whole '
                          r'number >= 1 \(got 0\)'),
    'dilations=abc': ('model.backbone.dilations=abc', r"dilations='abc': give one whole-number"),
    'dilations=[1.5,2,3]': ('model.backbone.dilations=[1.5,2,3]', r'every dilation must be a '
                            r'whole number >= 1 \(got 1\.5\)'),
    'kernel_size=4': ('model.backbone.kernel_size=4', r'kernel_size=4: MSDA windows are centred '
                      r'on the query, so the size must be an odd whole number'),
    'attn_types unknown': ('model.backbone.attn_types=[msda,msda,local,global]',
                           r"attn_types=.*each stage takes 'msda' or 'global', not 'local'"),
    'mlp_ratio=-1': ('model.backbone.mlp_ratio=-1', r'DilateFormer mlp_ratio=-1 cannot work: it '
                     r'must be a number in \(0, 64\]'),
    'with_cp=yes': ('model.backbone.with_cp=yes', r"model\.backbone\.with_cp='yes' cannot work: "
                    r'it must be True or False'),
    'max_norm=abc': ('optim_wrapper.clip_grad.max_norm=abc',
                     r"optim_wrapper\.clip_grad\.max_norm='abc' cannot work: it must be a "
                     r'number > 0'),
    'seed=abc': ('randomness.seed=abc', r"randomness\.seed='abc' cannot work: it must be a "
                 r'whole number >= 0'),
    'out_indices=3': ('model.backbone.out_indices=3', r'model\.backbone\.out_indices=3 gives 1 '
                      r'feature map\(s\), and model\.neck\.in_channels=.* expects 4'),
}

_BAD_BACKBONES = {  # built through the registry, as a config builds them
    'SGFormer window_size=0': (dict(type='SGFormer', window_size=0), r'window_size=0: the side'),
    'SGFormer window_size=-7': (dict(type='SGFormer', window_size=-7), r'window_size=-7'),
    'SGFormer window_size=1000': (dict(type='SGFormer', window_size=1000),
                                  r'window_size=1000: .*a whole number in 1\.\.64'),
    'QnAViT window_sizes 0': (dict(type='QnAViT', window_sizes=(0, 0, 0, 7)),
                              r'window_size=0: a whole number of tokens in 1\.\.256'),
    'QnAViT window_sizes -1': (dict(type='QnAViT', window_sizes=(0, 0, -1, 7)),
                               r'window_size=-1'),
    'QnAViT msa_modes unknown': (dict(type='QnAViT', msa_modes=('window', ) * 3 + ('local', )),
                                 r"WindowMSA mode must be 'window' or 'global', got 'local'"),
    'DGT kmeans_iters=2.5': (dict(type='DGT', kmeans_iters=2.5),
                             r'kmeans_iters=2\.5: a whole number >= 0'),
    'DGT kmeans_iters=-1': (dict(type='DGT', kmeans_iters=-1), r'kmeans_iters=-1'),
}


@pytest.mark.parametrize('case', sorted(_BAD_BACKBONES))
def test_bad_backbone_arguments_are_refused_when_the_model_is_built(case):
    from mmvit_ext.errors import refusal_message
    from mmvit_ext.models.registry import MODELS
    cfg, pattern = _BAD_BACKBONES[case]
    with pytest.raises(Exception) as err:
        MODELS.build(cfg)
    message = refusal_message(err.value)
    assert message is not None and re.search(pattern, message), (type(err.value), err.value)


def _config_with(option):
    """The demo config after ``--cfg-options OPTION``, as tools/train.py loads it."""
    import argparse

    from mmengine.config import DictAction

    from mmvit_ext.engine.runner_setup import load_config
    key, value = option.split('=', 1)
    args = argparse.Namespace(config=osp.join(REPO, DET_CFG), launcher='none', work_dir=None,
                              local_rank=0,
                              cfg_options={key: DictAction._parse_iterable(value)})
    return load_config(args)


@pytest.mark.parametrize('case', sorted(_BAD_VALUES))
def test_bad_config_values_are_refused_naming_key_value_and_what_is_allowed(case):
    from mmvit_ext.apis import build_model_from_cfg
    from mmvit_ext.errors import refusal_message
    option, pattern = _BAD_VALUES[case]
    with pytest.raises(Exception) as err:
        build_model_from_cfg(_config_with(option))
    message = refusal_message(err.value)  # a refusal: the tools end on it in one line
    assert message is not None and re.search(pattern, message), (type(err.value), err.value)


@pytest.mark.parametrize('case', ['arch=huge', 'max_epochs=two'])
def test_bad_config_values_end_tools_train_in_one_line(case, small_data, tmp_path):
    option, pattern = _BAD_VALUES[case]
    code, out = _run([sys.executable, 'tools/train.py', DET_CFG, '--work-dir', str(tmp_path),
                      '--cfg-options', *_data_options(small_data), option])
    _one_line_error(code, out, pattern)


def test_backbone_arch_dicts_of_another_family_or_length():
    from mmvit_ext.errors import ConfigValueError
    with pytest.raises(ConfigValueError, match=r"SGFormer arch key 'embed_dims' takes a sequence"):
        SGFormer(arch=dict(DilateFormer.arch_zoo['tiny']))
    arch = dict(QnAViT.arch_zoo['tiny'])
    arch['qna_depths'] = arch['qna_depths'][:2]
    with pytest.raises(ConfigValueError, match=r"QnAViT arch key 'qna_depths' takes \d values, "
                       r'one per stage.*got 2'):
        QnAViT(arch=arch)
    assert DilateFormer(out_indices=3).out_indices == (3, )  # an int, as mmpretrain accepts it


def test_an_image_of_another_dtype_is_named(tmp_path):
    m = DilateFormer(arch=dict(embed_dims=12, depths=(1, 1, 1, 1), num_heads=(3, 3, 3, 3)))
    m.eval()
    with pytest.raises(ValueError, match=r'DilateFormer has torch\.float32 weights and got '
                       r'torch\.float64 images \(shape \(1, 3, 32, 32\)\): convert the input'):
        m(torch.zeros(1, 3, 32, 32, dtype=torch.float64))
    with torch.autocast('cpu', dtype=torch.bfloat16):  # AMP: the autocast casts, no refusal
        m(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16))


def test_a_flax_file_with_a_string_leaf_is_named(tmp_path):
    from tests.test_models.official_layouts import pack_msgpack
    path = tmp_path / 'checkpoint_1'
    path.write_bytes(pack_msgpack({'params': {'StemBlock_0': {'conv_1x1': {
        'kernel': 'not an array'}}}}))
    model = QnAViT('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match=r"Flax msgpack file but not an official "
                       r"QnA-ViT checkpoint: .*entry 'StemBlock_0/conv_1x1/kernel' is str 'not "
                       r"an array', not an array of numbers"):
        model.init_weights()


@pytest.mark.parametrize('api', ['init_detector', 'DetInferencer'])
def test_the_inference_apis_refuse_another_family_and_nan_weights(api, det_checkpoints):
    """The backbone checks its own part of whatever is loaded into it: no framework code is
    patched, and mmdet's own APIs refuse what does not fit."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, DET_CFG))

    def load(ckpt):
        if api == 'init_detector':
            from mmdet.apis import init_detector
            return init_detector(cfg, ckpt, device='cpu')
        from mmdet.apis import DetInferencer
        return DetInferencer(model=cfg, weights=ckpt, device='cpu')

    with pytest.raises(CheckpointMismatchError, match=r"the checkpoint's backbone part "
                       r"\('backbone\.\*'\) does not fit DilateFormer: .*It holds a DGT-T "
                       'backbone'):
        load(det_checkpoints['dgt'])
    with pytest.raises(NonFiniteCheckpointError, match=r'nan_detector\.pth holds NaN/Inf values '
                       r'in 1 of \d+ tensors: backbone\.stem\.0\.weight'):
        load(det_checkpoints['nan'])


def test_get_model_with_weights_refuses_a_checkpoint_of_another_family(tmp_path):
    from mmpretrain import get_model
    path = _dgt_file(tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r'does not fit DilateFormer.*It holds a '
                       r'DGT-T backbone'):
        get_model('dilateformer-t_8xb128_in1k', pretrained=path)


_SEG_CFG = 'configs/_small_/dilateformer-demo_upernet_small-ade20k.py'


@pytest.mark.parametrize('entry', ['init_detector', 'DetInferencer', 'apis.inferencer',
                                   'mmseg init_model', 'mmpretrain get_model'])
def test_every_inference_entry_refuses_nan_or_inf_outside_the_backbone(entry, tmp_path):
    """The frameworks' own entry points load through mmengine's loader, whose local scheme checks
    a checkpoint of one of our models everywhere (a NaN neck returned 6 detections, an Inf head
    none, with no word); a plain model's checkpoint is left alone."""
    from mmengine.config import Config

    from mmvit_ext.apis import build_model_from_cfg
    config = {'mmseg init_model': _SEG_CFG}.get(entry, DET_CFG)
    if entry == 'mmpretrain get_model':
        config = 'configs/_small_/dilateformer-demo_small-imagenet.py'
    cfg = Config.fromfile(osp.join(REPO, config))
    torch.manual_seed(0)
    model, _ = build_model_from_cfg(cfg)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    outside = [k for k in sd if not k.startswith('backbone.') and sd[k].is_floating_point()]
    key = outside[-1]  # the last head layer
    sd[key].view(-1)[0] = float('inf') if entry.endswith('get_model') else float('nan')
    path = str(tmp_path / 'bad.pth')
    torch.save({'state_dict': sd, 'meta': {}}, path)
    with pytest.raises(NonFiniteCheckpointError, match=rf'bad\.pth holds NaN/Inf values in 1 of '
                       rf'\d+ tensors: {re.escape(key)}'):
        if entry == 'init_detector':
            from mmdet.apis import init_detector
            init_detector(cfg, path, device='cpu')
        elif entry == 'DetInferencer':
            from mmdet.apis import DetInferencer
            DetInferencer(model=cfg, weights=path, device='cpu')
        elif entry == 'apis.inferencer':
            from mmvit_ext.apis import inferencer
            inferencer(osp.join(REPO, config), weights=path, device='cpu')
        elif entry == 'mmseg init_model':
            from mmseg.apis import init_model
            init_model(cfg, path, device='cpu')
        else:
            from mmpretrain import get_model
            get_model(cfg, pretrained=path)


def test_a_plain_models_checkpoint_is_left_alone():
    """Not ours: mmengine's loader returns it as without mmvit_ext (NaN included)."""
    from mmengine.runner.checkpoint import load_checkpoint
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    sd = {'0.weight': torch.full((2, 3), float('nan')), '0.bias': torch.zeros(2)}
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({'state_dict': sd}, osp.join(tmp, 'plain.pth'))
        load_checkpoint(model, osp.join(tmp, 'plain.pth'))
    assert torch.isnan(model[0].weight).all()
