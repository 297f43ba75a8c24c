"""The manual (docs/en, Sphinx + MyST) builds with warnings as errors, so that a broken internal
link, a missing page or a bad include fails; the model zoo page lists every metafile model."""
import glob
import os.path as osp
import re
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
                 'changelog', 'model_zoo', 'models/dilateformer', 'ablation', 'glossary',
                 'faq', 'user_guides/finetune', 'user_guides/custom_dataset'):
        assert osp.isfile(tmp_path / 'html' / f'{page}.html'), page
    notes = _lab_notes(tmp_path / 'html')
    assert not notes, notes[:10]
    zoo = (tmp_path / 'html' / 'model_zoo.html').read_text()
    names = []
    for metafile in glob.glob(f'{REPO}/configs/*/metafile.yml'):
        with open(metafile) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    assert len(names) > 50 and all(n in zoo for n in names), \
        [n for n in names if n not in zoo][:5]
    api = {p: (tmp_path / 'html' / 'api' / f'{p}.html').read_text()
           for p in ('models', 'attention', 'engine', 'deployment', 'checkpoints')}
    assert 'DetectorEnd2End' in api['deployment'] and 'TimmCosineLR' in api['engine']
    assert 'attention_form' in api['attention'] and 'DilateFormer' in api['models']


# Sentences about who measured what, on which machine lent when, or from which commit: lab notes,
# not a manual. A number belongs in a benchmarks row with its command, device, versions, date.
LAB_NOTES = [r'\blent\b', r'\bwas not available\b', r'\bno GPU was\b', r'\btop README\b',
             r'\bdev machine\b', r'\bthis session\b', r'\bto this task\b', r'\bH100 run\b',
             r'\bmeasurement so far\b', r'\bEvery command in this README\b',
             r'\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b']


def _lab_notes(html_dir):
    """(page, phrase) for every lab-note phrase in the visible text of the built pages (the
    changelog, which keeps the history, aside)."""
    found = []
    for path in glob.glob(f'{html_dir}/**/*.html', recursive=True):
        rel = osp.relpath(path, html_dir)
        if rel.startswith(('_', 'changelog', 'genindex', 'search', 'py-modindex')):
            continue
        with open(path) as f:
            html = f.read()
        text = re.sub(r'<(script|style)\b.*?</\1>', ' ', html, flags=re.S)
        text = re.sub(r'<[^>]+>', ' ', text)
        for pattern in LAB_NOTES:
            found += [(rel, m.group(0)) for m in re.finditer(pattern, text, re.I)]
    return found


def test_the_lab_note_check_finds_a_lab_note(tmp_path):
    """The check above can fail."""
    page = tmp_path / 'page.html'
    page.write_text('<p>No GPU was lent to this session; measured at commit 4a8986c.</p>')
    assert {phrase for _, phrase in _lab_notes(tmp_path)} == {
        'lent', 'No GPU was', 'this session', '4a8986c'}


def test_a_broken_internal_link_fails_the_build(tmp_path):
    """The check above can fail: a link to a page that does not exist is an error."""
    src = tmp_path / 'en'
    shutil.copytree(osp.join(REPO, 'docs', 'en'), src,
                    ignore=shutil.ignore_patterns('_build', '_generated'))
    with open(src / 'deployment.md', 'a') as f:
        f.write('\nSee [the missing page](no_such_page.md).\n')
    proc = _build(src, tmp_path / 'html', MMVIT_DOCS_REPO=REPO)
    assert proc.returncode != 0 and 'no_such_page' in proc.stderr, proc.stderr[-3000:]


def test_no_lab_notes_in_the_readmes_and_config_comments():
    """The same phrases in what is read outside the manual: the READMEs and the configs'
    comments and metafiles."""
    paths = [osp.join(REPO, 'README.md')] + glob.glob(f'{REPO}/configs/**/*.md', recursive=True) \
        + glob.glob(f'{REPO}/configs/**/*.py', recursive=True) \
        + glob.glob(f'{REPO}/configs/**/*.yml', recursive=True)
    found = []
    for path in paths:
        with open(path) as f:
            text = f.read()
        if path.endswith('.py'):  # the comments
            text = '\n'.join(line.split('#', 1)[1] for line in text.splitlines() if '#' in line)
        for pattern in LAB_NOTES:
            found += [(osp.relpath(path, REPO), m.group(0))
                      for m in re.finditer(pattern, text, re.I)]
    assert not found, found[:10]
