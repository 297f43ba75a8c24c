"""Every command in the READMEs works as written.

The commands are taken from the ``shell`` blocks of README.md, configs/*/README.md and the
manual's pages (docs/**/*.md; the pages generated from the configs' READMEs at build time are
those READMEs). Each
python tool must accept the README's arguments - parsed by the tool's own argparse, with the
placeholders (CKPT, CONFIG, IMAGE, ...) filled and optional ``[...]`` parts included - and every
script, config and requirements file a command names must exist. Commands that
need a GPU, a cluster, COCO or official weights stop there; their behaviour on the small data is
run by the tool tests (train/test/dist/mim in test_train_test, converters, analysis tools,
export). A README command that no rule here recognises fails the test: adding one to a README
means saying how it is checked.
"""
import glob
import json
import os.path as osp
import re
import shlex
import subprocess
import sys

from .conftest import REPO, run_env

_GENERATED = re.compile(r'docs/en/(models/[^/_][^/]*\.md|ablation\.md|_generated/.*|_build/.*)$')
DOCS = ['README.md'] + sorted(osp.relpath(p, REPO)
                              for p in glob.glob(f'{REPO}/configs/*/README.md')) + \
    sorted(p for p in (osp.relpath(q, REPO) for q in glob.glob(f'{REPO}/docs/**/*.md',
                                                                recursive=True))
           if not _GENERATED.match(p))
SMALL_CONFIG = 'configs/_small_/mask-rcnn_dilateformer-demo_fpn_small-coco.py'
PLACEHOLDERS = {  # README placeholder -> a value of the right kind
    'CONFIG': SMALL_CONFIG, 'CKPT': 'work_dirs/x/epoch_1.pth', 'PARTITION': 'cpu', 'JOB': 'job',
    'IMAGE': 'demo.jpg', 'OUT_DIR': 'vis_out', 'OFFICIAL.pth': 'official.pth', 'H': '64',
    'W': '64', 'N': '0', 'k=v': 'train_cfg.max_epochs=1', 'CHECKPOINT': 'model.pth',
}

# A python tool run by argv, stopped right after its parser accepted the arguments.
_PARSE_ONLY = r'''
import argparse, json, runpy, sys, threading
class Parsed(BaseException):  # not caught by the tools' own error handling
    pass
depth = threading.local()
orig_args, orig_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
def parse_args(self, args=None, namespace=None):
    depth.inside = True
    try:
        ns = orig_args(self, args, namespace)
    finally:
        depth.inside = False
    raise Parsed(vars(ns))
def parse_known_args(self, args=None, namespace=None):
    result = orig_known(self, args, namespace)
    if getattr(depth, 'inside', False):
        return result
    raise Parsed(vars(result[0]))
argparse.ArgumentParser.parse_args = parse_args
argparse.ArgumentParser.parse_known_args = parse_known_args
results = []
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    try:
        runpy.run_path(argv[0], run_name='__main__')
        results.append('ran to the end without parsing arguments')
    except Parsed:
        results.append('ok')
    except SystemExit as exc:
        results.append(f'exit {exc.code}')
print('RESULTS ' + json.dumps(results))
'''


def readme_commands():
    """(document, command) for every command line of a ``shell`` block."""
    for doc in DOCS:
        with open(osp.join(REPO, doc)) as f:
            text = f.read()
        for block in re.findall(r'```shell\n(.*?)```', text, re.S):
            for line in block.replace('\\\n', ' ').splitlines():
                line = re.split(r'\s#', line)[0].strip()
                if line and not line.startswith('#'):
                    yield doc, line


def concrete_argv(command):
    """The command with optional parts included, the first of alternatives and the
    placeholders filled; leading VAR=value assignments dropped."""
    command = command.replace('[', ' ').replace(']', ' ')
    command = re.sub(r'(\S+)\|\S+', r'\1', command)
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)]
    while argv and re.fullmatch(r'[A-Z_]+=\S*', argv[0]):
        argv.pop(0)
    return argv


def _exists(path):
    return osp.exists(osp.join(REPO, path))


def plan(argv):
    """What checks a command: ('parse', tool argv) for the tools' own parsers, ('exists', path) for
    files it names, ('model', name) for configs mim finds by name. Raises on a command no rule
    knows."""
    checks = []
    configs = [a for a in argv if a.startswith('configs/')]
    checks += [('exists', c) for c in configs]
    head = argv[:2]
    if head[0] == 'python' and argv[1].startswith('tools/'):
        checks.append(('parse', argv[1:]))
    elif head == ['python', '-c']:  # a one-line check: valid Python
        checks.append(('python', argv[2]))
    elif head == ['python', '-m'] and argv[2] == 'pytest':  # the test files it names exist
        checks += [('exists', a.split('::')[0]) for a in argv[3:] if a.startswith('tests/')]
    elif head == ['python', '-m'] and argv[2] == 'sphinx':  # the docs build (tests/test_docs.py)
        checks.append(('exists', next(a for a in argv[3:] if a.startswith('docs/'))))
    elif head == ['bash', 'tools/dist_train.sh']:  # CONFIG GPUS [args] -> train.py CONFIG args
        checks += [('exists', argv[1]), ('parse', ['tools/train.py', argv[2], *argv[4:]])]
    elif head == ['bash', 'tools/dist_test.sh']:  # CONFIG CKPT GPUS [args]
        checks += [('exists', argv[1]), ('parse', ['tools/test.py', *argv[2:4], *argv[5:]])]
    elif head == ['bash', 'tools/slurm_train.sh']:  # PARTITION JOB CONFIG WORK_DIR [args]
        checks += [('exists', argv[1]),
                   ('parse', ['tools/train.py', argv[4], '--work-dir', argv[5], *argv[6:]])]
    elif head[0] == 'bash':  # the set-up scripts (CI runs run_tests.sh itself)
        checks.append(('exists', argv[1]))
    elif head == ['mim', 'train'] or head == ['mim', 'test']:
        target = argv[3]
        checks.append(('exists', target) if target.startswith('configs/') else ('model', target))
        if head[1] == 'test':
            ckpt = argv[argv.index('--checkpoint') + 1]
            checks.append(('parse', ['tools/test.py', target, ckpt]))
    elif head == ['pip', 'install']:  # requirement files exist; '.' is the checkout
        files = [argv[i + 1] for i, a in enumerate(argv) if a == '-r']
        checks += [('exists', f) for f in files]
        checks += [('exists', 'setup.py') for a in argv[2:] if a == '.']
    else:
        raise AssertionError(f'no rule checks this README command: {" ".join(argv)}')
    return checks


def test_every_readme_command_is_accepted_as_written():
    commands = list(readme_commands())
    assert len(commands) >= 40, commands  # the READMEs hold that many; extraction works
    checks = [(doc, cmd, check) for doc, cmd in commands for check in plan(concrete_argv(cmd))]
    missing = [(doc, cmd, path) for doc, cmd, (kind, path) in checks
               if kind == 'exists' and not _exists(path)]
    assert not missing, missing

    for doc, cmd, (kind, name) in checks:
        if kind == 'model':  # mim looks a bare config name up in the package's configs
            assert glob.glob(f'{REPO}/configs/**/{name}', recursive=True), (doc, cmd)
        if kind == 'python':
            compile(name, f'{doc}: {cmd}', 'exec')
    assert any(doc.startswith('docs/') for doc, _ in commands), 'no command of the manual seen'


    parses = [(doc, cmd, argv) for doc, cmd, (kind, argv) in checks if kind == 'parse']
    proc = subprocess.run([sys.executable, '-c', _PARSE_ONLY,
                           json.dumps([argv for _, _, argv in parses])],
                          cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and 'RESULTS ' in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split('RESULTS ', 1)[1].splitlines()[0])
    refused = [(doc, cmd, result) for (doc, cmd, _), result in zip(parses, results)
               if result != 'ok']
    assert not refused, (refused, proc.stderr[-3000:])
    assert len(parses) >= 35


def test_a_wrong_flag_in_a_readme_command_would_be_caught():
    """The check above can fail: a flag the tool does not have, or a config that does not exist."""
    proc = subprocess.run(
        [sys.executable, '-c', _PARSE_ONLY,
         json.dumps([['tools/test.py', SMALL_CONFIG, 'x.pth', '--no-such-flag']])],
        cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=300)
    assert 'RESULTS ["exit 2"]' in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert 'unrecognized arguments: --no-such-flag' in proc.stderr
    checks = plan(concrete_argv('python tools/train.py configs/nowhere/x.py'))
    assert ('exists', 'configs/nowhere/x.py') in checks and not _exists('configs/nowhere/x.py')
    try:
        plan(['docker', 'run', 'x'])
    except AssertionError as err:
        assert 'no rule checks this README command' in str(err)
    else:
        raise AssertionError('an unknown command was accepted')


CHEAP_TOOLS = ('tools/analysis_tools/get_flops.py', 'tools/deployment/export_onnx.py')
NO_EXTERNAL_INPUT = {'CONFIG', 'H', 'W'}  # placeholders filled with the small demo's config / size


def test_readme_commands_that_need_nothing_external_run_for_real(tmp_path):
    """The README's FLOP-count and export commands, run on the small demo config on the CPU
    (from a scratch directory, where the export writes its file)."""
    runs = []
    for doc, cmd in readme_commands():
        argv = concrete_argv(cmd)
        words = set(shlex.split(cmd.replace('[', ' ').replace(']', ' ')))
        if argv[:1] == ['python'] and argv[1] in CHEAP_TOOLS and \
                not (words & set(PLACEHOLDERS)) - NO_EXTERNAL_INPUT:
            runs.append((doc, cmd, argv))
    assert {argv[1] for _, _, argv in runs} == set(CHEAP_TOOLS), runs
    for doc, cmd, argv in runs:
        argv = [osp.join(REPO, a) if a.startswith(('configs/', 'tools/')) else a for a in argv]
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=run_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (doc, cmd, proc.stderr[-3000:])
        # third-party deprecation notices stay out of our tools' output
        assert 'pkg_resources' not in proc.stderr, (doc, cmd, proc.stderr[-3000:])
        assert 'FLOPs' in proc.stdout or 'OK: the exported model matches PyTorch' in \
            proc.stdout, (doc, cmd, proc.stdout)
