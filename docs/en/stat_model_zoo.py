"""The model zoo table, generated from the configs' metafiles (``model-index.yml``) at each docs
build: one row per config with its task, dataset, the paper's numbers, the measured params and
FLOPs, and links to the config and the family page."""
import os
import re
import os.path as osp

import yaml

GITHUB = 'https://github.com/mmvit-ext/mmvit_ext/blob/main/'


def _rows(repo: str):
    with open(osp.join(repo, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    for metafile in index['Import']:
        with open(osp.join(repo, metafile)) as f:
            meta = yaml.safe_load(f)
        family = meta['Collections'][0]['Name']
        readme = meta['Collections'][0].get('README', '')
        for model in meta.get('Models', []):
            info = model.get('Metadata', {})
            results = model.get('Results') or [{}]
            metrics = '; '.join(f'{k} {v}' for k, v in (results[0].get('Metrics') or {}).items())
            yield dict(family=family, readme=readme, name=model['Name'], config=model['Config'],
                       task=results[0].get('Task', ''), dataset=results[0].get('Dataset', ''),
                       metrics=metrics or 'none reported', params=info.get('Parameters'),
                       flops=info.get('FLOPs'), input=info.get('Input Size', ''))


def _num(value, scale):
    return '' if value in (None, '') else f'{float(value) / scale:.2f}'


def write(out: str, repo: str) -> None:
    lines = ['| family | config | task | dataset | paper | params (M) | FLOPs (G) | at |',
             '|---|---|---|---|---|---|---|---|']
    for r in _rows(repo):
        family = f'[{r["family"]}]({GITHUB}{r["readme"]})' if r['readme'] else r['family']
        lines.append(f'| {family} | [{r["name"]}]({GITHUB}{r["config"]}) | {r["task"]} | '
                     f'{r["dataset"]} | {r["metrics"]} | {_num(r["params"], 1e6)} | '
                     f'{_num(r["flops"], 1e9)} | {r["input"]} |')
    os.makedirs(osp.dirname(out), exist_ok=True)
    text = '\n'.join(lines) + '\n'
    if not osp.exists(out) or open(out).read() != text:
        with open(out, 'w') as f:
            f.write(text)


FAMILIES = {'dilateformer': 'models/dilateformer.md', 'sgformer': 'models/sgformer.md',
            'qna': 'models/qna.md', 'dgt': 'models/dgt.md', 'ablation': 'ablation.md'}
_LINK = re.compile(r'(!?)\[([^\]]*)\]\(([^)\s]+)\)')


def _rewrite_links(text: str, base: str, page: str) -> str:
    """Relative links of a file in ``base`` (a folder of the repository), as they read on
    ``page`` of the manual: the family READMEs become their pages, files of the manual its
    pages, other files of the repository their paths (code), web links stay."""
    depth = page.count('/')

    def sub(m):
        bang, label, target = m.groups()
        if re.match(r'[a-z]+://', target) or target.startswith('#'):
            return m.group(0)
        path = osp.normpath(osp.join(base, target.split('#')[0]))
        other = [f for f, p in FAMILIES.items() if path == f'configs/{f}/README.md']
        if other:
            return f'[{label}]({"../" * depth}{FAMILIES[other[0]]})'
        if path == 'README.md':
            return f'[{label}]({"../" * depth}index.md)'
        if path.startswith('docs/en/models/_details/'):  # appended to this very page
            return f'{label} (below)'
        if path.startswith('docs/en/'):
            return f'[{label}]({osp.relpath(path[len("docs/en/"):], osp.dirname(page) or ".")})'
        return f'`{path}`' if label in (target, osp.basename(target), path) \
            else f'{label} (`{path}`)'
    return _LINK.sub(sub, text)


def write_model_pages(docs: str, repo: str) -> None:
    """docs/en/<page> for every family: its README (links rewritten), then the longer notes of
    docs/en/models/_details/<family>.md where there are some."""
    for family, page in FAMILIES.items():
        with open(osp.join(repo, 'configs', family, 'README.md')) as f:
            text = _rewrite_links(f.read(), f'configs/{family}', page)
        details = osp.join(docs, 'models', '_details', f'{family}.md')
        if osp.exists(details):
            with open(details) as f:
                text = text.rstrip() + '\n\n' + _rewrite_links(
                    f.read(), 'docs/en/models/_details', page)
        out = osp.join(docs, page)
        os.makedirs(osp.dirname(out), exist_ok=True)
        if not osp.exists(out) or open(out).read() != text:
            with open(out, 'w') as f:
                f.write(text)
