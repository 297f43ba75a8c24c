"""An exported file's metadata is data: checked field by field, and the test pipeline built from
it only out of the transforms the frameworks register.

The metadata (JSON under the key ``mmvit_ext``) is written by ``tools/deployment/export_onnx.py``
and read back by :class:`mmvit_ext.deployment.OnnxModel`. Anyone can edit it. Two mmengine
behaviours would turn an edited file into code execution if the stored pipeline went to
mmcv's ``Compose`` as it is: ``Registry.get`` falls back to importing any dotted name
(``"type": "subprocess.run"``), and a scope (``"scope"`` or a step's ``"_scope_"``) makes
mmengine import ``<scope>.registry``. So here:

* every field is checked for its type, its allowed values and its size before anything is built
  (:func:`check_metadata`); anything else in the file is refused in one line;
* the scope is one of the three frameworks', fixed by the kind of model;
* every ``type`` in the pipeline, nested ones included, is looked up in the scope's
  ``TRANSFORMS`` registry and its ancestors (mmcv's, mmengine's) by name only, never imported,
  and replaced by the class found before mmcv builds the step (:func:`build_test_pipeline`).
"""
import json
import math
import re
from typing import Any, Dict, List

from ..errors import Refusal
from .tasks import TASKS

__all__ = ['METADATA_KEY', 'ModelFileError', 'read_metadata', 'check_metadata',
           'build_test_pipeline']

METADATA_KEY = 'mmvit_ext'

#: scopes a step's type may name explicitly (``mmdet.PackDetInputs``); each is a package that
#: registers transforms, looked up in the registry tree, never imported by this name
_TYPE_SCOPES = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain')
_TYPE_NAME = re.compile(r'(?:(%s)\.)?([A-Za-z_][A-Za-z0-9_]{0,79})' % '|'.join(_TYPE_SCOPES))
_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_]{0,63}')

MAX_BYTES = 1 << 20  # the whole JSON text
MAX_STEPS = 32
MAX_DEPTH = 6  # of a step's arguments (TestTimeAug nests lists of steps)
MAX_ITEMS = 256  # of any list or dict inside a step
MAX_TEXT = 512  # characters of any string inside a step
MAX_CLASSES = 100000
MAX_CLASS_NAME = 256


class ModelFileError(Refusal, ValueError):
    """An exported file whose metadata is not what ``export_onnx.py`` writes."""


def _fail(source: str, what: str) -> ModelFileError:
    return ModelFileError(f'{source}: refusing its {METADATA_KEY} metadata: {what}. Export the '
                          'model again with tools/deployment/export_onnx.py')


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(value: Any, where: str, depth: int, source: str) -> None:
    """A step argument: JSON scalars, short strings, small lists and dicts, bounded depth; a
    nested dict with a ``type`` is a nested step and is checked as one."""
    if depth > MAX_DEPTH:
        raise _fail(source, f'{where} is nested deeper than {MAX_DEPTH} levels')
    if value is None or isinstance(value, bool) or _is_number(value):
        return
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise _fail(source, f'{where} is a string of {len(value)} characters (at most '
                        f'{MAX_TEXT})')
        return
    if isinstance(value, list):
        if len(value) > MAX_ITEMS:
            raise _fail(source, f'{where} is a list of {len(value)} items (at most {MAX_ITEMS})')
        for i, item in enumerate(value):
            _check_value(item, f'{where}[{i}]', depth + 1, source)
        return
    if isinstance(value, dict):
        if 'type' in value:
            _check_step(value, where, depth, source)
            return
        _check_mapping(value, where, depth, source)
        return
    raise _fail(source, f'{where} is a {type(value).__name__}, not a JSON value')


def _check_mapping(value: dict, where: str, depth: int, source: str) -> None:
    if len(value) > MAX_ITEMS:
        raise _fail(source, f'{where} has {len(value)} keys (at most {MAX_ITEMS})')
    for key, item in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key) or key == '_scope_':
            raise _fail(source, f'{where} has the key {str(key)[:40]!r}, which is not an '
                        'argument name' if key != '_scope_' else
                        f'{where} sets _scope_ (the scope is fixed by the kind of model)')
        _check_value(item, f'{where}.{key}', depth + 1, source)


def _check_step(step: Any, where: str, depth: int, source: str) -> None:
    if not isinstance(step, dict):
        raise _fail(source, f'{where} is a {type(step).__name__}, not a step (a dict with a '
                    'type)')
    kind = step.get('type')
    if not isinstance(kind, str) or not _TYPE_NAME.fullmatch(kind):
        raise _fail(source, f'{where}.type is {str(kind)[:60]!r}: a transform is named by its '
                    'registered class name (optionally mmcv./mmdet./mmseg./mmpretrain.), never '
                    'by a module path')
    _check_mapping({k: v for k, v in step.items() if k != 'type'}, where, depth, source)


def _check_classes(meta: dict, source: str) -> None:
    classes = meta.get('classes', [])
    if not isinstance(classes, list) or len(classes) > MAX_CLASSES or not all(
            isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME for c in classes):
        raise _fail(source, f'classes must be a list of at most {MAX_CLASSES} names of 1-'
                    f'{MAX_CLASS_NAME} characters')
    palette = meta.get('palette', [])
    if not isinstance(palette, list) or len(palette) > MAX_CLASSES or not all(
            isinstance(p, list) and len(p) == 3 and all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in p)
            for p in palette):
        raise _fail(source, 'palette must be a list of [r, g, b] colours with values 0-255')


_FIELDS = ('kind', 'scope', 'input', 'family', 'test_pipeline', 'classes', 'palette',
           'mask_thr_binary', 'score_thr', 'max_per_img')


def check_metadata(meta: Any, source: str = 'the file') -> Dict:
    """Raise :class:`ModelFileError` unless ``meta`` is what ``export_onnx.py`` writes: the
    known fields only, each of its type, allowed values and size. Returns ``meta``."""
    if not isinstance(meta, dict):
        raise _fail(source, f'it is a JSON {type(meta).__name__}, not an object')
    unknown = sorted(str(k)[:40] for k in meta if k not in _FIELDS)
    if unknown:
        raise _fail(source, f'unknown fields {unknown[:5]}; the fields are {list(_FIELDS)}')
    kind = meta.get('kind')
    if not isinstance(kind, str) or kind not in TASKS:
        raise _fail(source, f'kind is {str(kind)[:40]!r}, not one of {sorted(TASKS)}')
    task = TASKS[kind]
    if meta.get('scope') not in task.file_scopes:
        raise _fail(source, f'scope is {str(meta.get("scope"))[:40]!r}; a {kind} export has '
                    f'the scope {" or ".join(task.file_scopes)}')
    if meta.get('input', task.input_kind) != task.input_kind:
        raise _fail(source, f'input must be {task.input_kind!r} for a {kind} export')
    family = meta.get('family', '')
    if not isinstance(family, str) or not re.fullmatch(r'[A-Za-z0-9_\-]{0,64}', family):
        raise _fail(source, 'family must be a class name')
    steps = meta.get('test_pipeline', [])
    if not isinstance(steps, list) or len(steps) > MAX_STEPS:
        raise _fail(source, f'test_pipeline must be a list of at most {MAX_STEPS} steps')
    for i, step in enumerate(steps):
        _check_step(step, f'test_pipeline[{i}]', 0, source)
    _check_classes(meta, source)
    problem = task.check_file_fields(meta)
    if problem:
        raise _fail(source, problem)
    return meta


def read_metadata(text: Any, source: str = 'the file') -> Dict:
    """The checked metadata from its JSON text (:func:`check_metadata`)."""
    if not isinstance(text, str) or len(text) > MAX_BYTES:
        raise _fail(source, f'it is not a JSON text of at most {MAX_BYTES} bytes')
    try:
        meta = json.loads(text, parse_constant=lambda name: _reject_constant(name, source))
    except (ValueError, RecursionError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise _fail(source, f'it is not valid JSON ({str(e)[:80]})') from None
    return check_metadata(meta, source)


def _reject_constant(name: str, source: str):
    raise _fail(source, f'it holds the non-finite number {name}')


# ----------------------------------------------------------------------------- the pipeline
def _transform_registries(scope: str) -> List:
    """The scope's ``TRANSFORMS`` registry and its ancestors, nearest first. ``scope`` is one of
    the three fixed framework names (checked by :func:`check_metadata`)."""
    import importlib
    registry = importlib.import_module(f'{scope}.registry').TRANSFORMS
    chain = []
    while registry is not None:
        registry.import_from_location()  # the framework's own lazy registration
        chain.append(registry)
        registry = registry.parent
    return chain


def _lookup(name: str, chain: List, source: str, where: str):
    prefix, bare = _TYPE_NAME.fullmatch(name).groups()
    import inspect
    for registry in chain:
        if prefix is not None and registry.scope != prefix:
            continue
        found = registry.module_dict.get(bare)
        if found is not None:
            if not inspect.isclass(found):
                raise _fail(source, f'{where}.type {name!r} is registered as a function, '
                            'not a transform class')
            return found
    scopes = ', '.join(r.scope for r in chain)
    raise _fail(source, f'{where}.type {name!r} is not a transform registered in {scopes}')


def _resolved(value: Any, chain: List, source: str, where: str) -> Any:
    """``value`` with every step's ``type`` replaced by its registered class (lists become the
    tuples the transforms take, as the config had them)."""
    if isinstance(value, list):
        return tuple(_resolved(v, chain, source, f'{where}[{i}]') for i, v in enumerate(value))
    if isinstance(value, dict):
        out = {k: _resolved(v, chain, source, f'{where}.{k}') for k, v in value.items()
               if k != 'type'}
        if 'type' in value:
            out['type'] = _lookup(value['type'], chain, source, where)
        return out
    return value


def build_test_pipeline(meta: Dict, source: str = 'the file', skip=('LoadAnnotations', )):
    """mmcv's ``Compose`` of the checked metadata's test pipeline (steps whose type name starts
    with one of ``skip`` left out), every transform class looked up by name in the framework's
    registries, under its fixed scope."""
    from mmcv.transforms import Compose
    from mmengine.registry import DefaultScope
    check_metadata(meta, source)
    scope = meta['scope']
    chain = _transform_registries(scope)
    steps = [s for s in meta.get('test_pipeline', [])
             if not s['type'].split('.')[-1].startswith(tuple(skip))]
    built = [_resolved(s, chain, source, f'test_pipeline[{i}]') for i, s in enumerate(steps)]
    with DefaultScope.overwrite_default_scope(scope):
        return Compose(built)
