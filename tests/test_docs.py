"""The manual (docs/en, Sphinx + MyST) builds with warnings as errors, so that a broken internal
link, a missing page or a bad include fails; the model zoo page lists every metafile model."""
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys

import yaml

from .conftest import REPO, run_env


def _build(src, out, **env):
    return subprocess.run([sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
                           'html', str(src), str(out)], cwd=REPO, env=dict(run_env(), **env),
                          capture_output=True, text=True, timeout=900)


def test_the_manual_builds_without_warnings(tmp_path):
    proc = _build('docs/en', tmp_path / 'html')
    assert proc.returncode == 0, proc.stderr[-4000:]
    for page in ('index', 'get_started', 'deployment', 'benchmarks', 'refusals', 'api',
                 'changelog', 'model_zoo', 'models/dilateformer', 'ablation',
                 'user_guides/finetune'):
        assert osp.isfile(tmp_path / 'html' / f'{page}.html'), page
    zoo = (tmp_path / 'html' / 'model_zoo.html').read_text()
    names = []
    for metafile in glob.glob(f'{REPO}/configs/*/metafile.yml'):
        with open(metafile) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    assert len(names) > 50 and all(n in zoo for n in names), \
        [n for n in names if n not in zoo][:5]
    api = (tmp_path / 'html' / 'api.html').read_text()
    assert 'DetectorEnd2End' in api and 'TimmCosineLR' in api  # docstrings reached


def test_a_broken_internal_link_fails_the_build(tmp_path):
    """The check above can fail: a link to a page that does not exist is an error."""
    src = tmp_path / 'en'
    shutil.copytree(osp.join(REPO, 'docs', 'en'), src,
                    ignore=shutil.ignore_patterns('_build', '_generated'))
    with open(src / 'deployment.md', 'a') as f:
        f.write('\nSee [the missing page](no_such_page.md).\n')
    proc = _build(src, tmp_path / 'html', MMVIT_DOCS_REPO=REPO)
    assert proc.returncode != 0 and 'no_such_page' in proc.stderr, proc.stderr[-3000:]
