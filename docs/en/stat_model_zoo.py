"""The model zoo tables, generated from the configs' metafiles (``model-index.yml``) at each docs
build: one table per task (COCO detection and instance segmentation, ADE20K semantic
segmentation, ImageNet classification) and the attention ablation in its own, every row with its
task, dataset, input size, the paper's numbers, the measured params and FLOPs (whole model, or
backbone only for the ablation), and what is available to download. Links stay in the manual:
the family's page; a config is named by its file name (it lives in ``configs/<family>/``)."""
import os
import os.path as osp
import re

import yaml

FAMILY_PAGES = {'DilateFormer': 'models/dilateformer.md', 'SG-Former': 'models/sgformer.md',
                'QnA-ViT': 'models/qna.md', 'DGT-style': 'models/dgt.md',
                'Attention-Ablation': 'ablation.md'}

# (heading, task and dataset of every row, how to tell a config of it)
TABLES = [
    ('Object detection and instance segmentation (COCO)',
     'Instance segmentation, COCO', lambda name: 'coco' in name),
    ('Semantic segmentation (ADE20K)', 'Semantic segmentation, ADE20K',
     lambda name: 'ade20k' in name),
    ('Image classification (ImageNet-1k)', 'Image classification, ImageNet-1k',
     lambda name: 'in1k' in name),
]
NOT_AVAILABLE = 'none available'


def _rows(repo: str):
    with open(osp.join(repo, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    for metafile in index['Import']:
        with open(osp.join(repo, metafile)) as f:
            meta = yaml.safe_load(f)
        family = meta['Collections'][0]['Name']
        for model in meta.get('Models', []):
            info = model.get('Metadata', {})
            results = model.get('Results') or [{}]
            metrics = '; '.join(f'{k} {v}' for k, v in (results[0].get('Metrics') or {}).items())
            yield dict(family=family, name=model['Name'], config=model['Config'],
                       metrics=metrics or 'none reported', params=info.get('Parameters'),
                       flops=info.get('FLOPs'), input=info.get('Input Size', ''),
                       weights=model.get('Weights') or NOT_AVAILABLE)


def _num(value, scale):
    return '' if value in (None, '') else f'{float(value) / scale:.2f}'


def _table(rows, task, scope, input_default=''):
    lines = ['| family | config | task, dataset | input | paper | params (M) | FLOPs (G) | '
             'counted | checkpoint, log |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        family = f'[{r["family"]}]({FAMILY_PAGES[r["family"]]})' \
            if r['family'] in FAMILY_PAGES else r['family']
        lines.append(f'| {family} | `{osp.basename(r["config"])}` | {task} | {r["input"] or input_default} | '
                     f'{r["metrics"]} | {_num(r["params"], 1e6)} | {_num(r["flops"], 1e9)} | '
                     f'{scope} | {r["weights"]} |')
    return lines


def write(out: str, repo: str) -> None:
    rows = list(_rows(repo))
    ours = [r for r in rows if r['family'] != 'Attention-Ablation']
    ablation = [r for r in rows if r['family'] == 'Attention-Ablation']
    lines = []
    for heading, task, belongs in TABLES:
        lines += ['', f'## {heading}', '']
        lines += _table([r for r in ours if belongs(r['name'])], task, 'whole model')
    lines += ['', '## Attention ablation (backbone only)', '',
              'One skeleton, the attention chosen per stage, every variant sized to the same '
              'FLOPs; params and FLOPs are the backbone\'s at 224x224 ([ablation](ablation.md)).',
              '']
    for heading, task, belongs in TABLES:
        lines += _table([r for r in ablation if belongs(r['name'])], task, 'backbone only',
                        '224x224')[(0 if heading.startswith('Object') else 2):]
    leftover = [r['name'] for r in rows if not any(b(r['name']) for _, _, b in TABLES)]
    if leftover:
        raise ValueError(f'model zoo: no table takes {leftover} (name it *coco*, *ade20k* or '
                         '*in1k*)')
    os.makedirs(osp.dirname(out), exist_ok=True)
    text = '\n'.join(lines).lstrip() + '\n'
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
