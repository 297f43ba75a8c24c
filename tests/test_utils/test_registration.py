import subprocess
import sys

from ..conftest import REPO, run_env

# Hide the named frameworks from the import system, then import the plugin and build a backbone.
_SCRIPT = '''
import sys
blocked = set(sys.argv[1].split(','))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in blocked:
            raise ImportError(f'{name} is blocked for this test')
sys.meta_path.insert(0, Block())
sys.path.insert(0, %r)
import mmvit_ext
from mmengine.registry import MODELS
m = MODELS.build(dict(type='DilateFormer', arch='tiny'))
print(type(m).__name__, sorted(k for k in sys.modules if k.split('.')[0] in blocked))
'''


def test_import_and_build_with_only_some_frameworks_installed():
    for blocked in ('mmdet,mmseg,mmpretrain', 'mmdet,mmseg', 'mmpretrain'):
        proc = subprocess.run([sys.executable, '-c', _SCRIPT % REPO, blocked],
                              cwd='/', env=run_env(), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip().endswith('DilateFormer []')


_LOOKUP = '''
import sys
sys.path.insert(0, %r)
import mmvit_ext, torch
kind = sys.argv[1]
if kind == 'mmpretrain':
    from mmpretrain import get_model, list_models, ImageClassificationInferencer
    names = list_models('*dilateformer*')
    model = get_model('dilateformer-t_8xb128_in1k')
    logits = model(torch.randn(1, 3, 64, 64))
    inferencer = ImageClassificationInferencer('qnavit-t_8xb128_in1k', device='cpu')
    print('OK', names, tuple(logits.shape), type(inferencer.model.backbone).__name__)
elif kind == 'mmdet':
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer('mask-rcnn_dgt-t_fpn_1x_coco', device='cpu')
    print('OK', type(inferencer.model.backbone).__name__, inferencer.model.backbone.arch_name)
    DetInferencer('sgformer-s_8xb128_in1k', device='cpu')
else:
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer('sgformer-s_upernet_8xb2-160k_ade20k-512x512', device='cpu')
    print('OK', type(inferencer.model.backbone).__name__, inferencer.model.backbone.arch_name)
'''


def test_models_are_found_by_name_in_each_framework():
    expected = {
        'mmpretrain': "OK ['dilateformer-b_8xb128_in1k', 'dilateformer-s_8xb128_in1k', "
                      "'dilateformer-t_8xb128_in1k'] (1, 1000) QnAViT",
        'mmdet': 'OK DGT tiny',
        'mmseg': 'OK SGFormer small',
    }
    for kind, line in expected.items():
        proc = subprocess.run([sys.executable, '-c', _LOOKUP % REPO, kind], cwd='/',
                              env=run_env(), capture_output=True, text=True, timeout=300)
        assert line in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
        if kind == 'mmdet':  # an ImageNet model asked of the detection inferencer: said so
            assert proc.returncode != 0 and ('sgformer-s_8xb128_in1k is an mmpretrain model of '
                                             'mmvit_ext') in proc.stderr
        else:
            assert proc.returncode == 0, proc.stderr[-3000:]
