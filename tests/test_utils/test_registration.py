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
