"""The architecture as the code keeps it: the import contracts of .importlinter hold and can
fail (the torch-only attention: tests/test_attention/test_torch_alone.py)."""
import os
import shutil
import subprocess
import sys
import textwrap

from .conftest import REPO, run_env

LINT = shutil.which('lint-imports', path=os.path.dirname(sys.executable))


def _lint(root):
    return subprocess.run([LINT, '--no-cache', '--config', os.path.join(root, '.importlinter')],
                          cwd=root, env=dict(run_env(), PYTHONPATH=root), capture_output=True,
                          text=True, timeout=600)


def test_the_contracts_hold_and_a_broken_layer_breaks_them(tmp_path):
    """lint-imports passes on the package; an upward import (inside a function, where a cycle
    used to hide) from the attention operators into the training engine breaks two contracts."""
    assert LINT, 'import-linter is installed with the newest stack (requirements/lint.txt)'
    proc = _lint(REPO)
    assert proc.returncode == 0 and 'broken' not in proc.stdout.split('Contracts:')[-1] \
        .replace('0 broken', ''), proc.stdout[-3000:]
    copy = tmp_path / 'repo'
    shutil.copytree(os.path.join(REPO, 'mmvit_ext'), copy / 'mmvit_ext',
                    ignore=shutil.ignore_patterns('.mim', '__pycache__'))
    shutil.copy(os.path.join(REPO, '.importlinter'), copy / '.importlinter')
    with open(copy / 'mmvit_ext' / 'attention' / 'shapes.py', 'a') as f:
        f.write(textwrap.dedent('''
            def _sneaky():
                from mmvit_ext.engine.runner import GuardedRunner  # an upward import
                return GuardedRunner
            '''))
    proc = _lint(str(copy))
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert 'Layers import only downward BROKEN' in proc.stdout, proc.stdout[-3000:]
    assert 'The attention operators need torch alone BROKEN' in proc.stdout, proc.stdout[-3000:]


def test_import_mmvit_ext_with_the_stack_registers_the_backbones():
    """With the stack present, ``import mmvit_ext`` behaves as before: the backbones are in the
    frameworks' registries."""
    code = ('import mmvit_ext\nfrom mmdet.registry import MODELS\n'
            "print(all(MODELS.get(n) is not None for n in ('DilateFormer', 'SGFormer', 'QnAViT', "
            "'DGT')))")
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=run_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.stdout.strip().endswith('True'), proc.stderr[-3000:]
