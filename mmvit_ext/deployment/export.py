"""Building a config's model for export and writing it: the ``input -> results`` module of its
task, ``torch.export`` programs with free height and width, and the ONNX file with its
metadata (what ``tools/deployment/export_onnx.py`` runs)."""
import json
import os
import os.path as osp
import warnings
from typing import List, Optional, Tuple

import torch
import torch.nn as nn

from ..utils.atomic import atomic_write
from ..utils.torch_features import require
from .adaptive_pooling import swap_adaptive_pooling
from .compare import as_tuple
from .metadata import METADATA_KEY, check_metadata
from .rewriter import exporting
from .tasks import DETECTOR, task_for_scope

__all__ = ['build_for_export', 'exportable', 'free_size_range', 'export_program', 'export_onnx',
           'export_metadata', 'used_operators', 'check_detector_opset']


def build_for_export(config: str, checkpoint: Optional[str] = None):
    """``(cfg, model, scope)`` of a config file (or installed config name) as the export tools
    take it: random weights seeded with 0, or ``checkpoint`` loaded strictly (a checkpoint that
    does not fit, or holds NaN / Inf, is refused naming the keys)."""
    from mmengine.config import Config

    from ..apis import build_model_from_cfg, resolve_config_path
    from ..checkpoints import check_checkpoint_fits, read_checkpoint
    cfg = Config.fromfile(resolve_config_path(config))
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(cfg)
    if checkpoint:
        ckpt = read_checkpoint(checkpoint)  # a file or a URL, through the safe loader
        check_checkpoint_fits(model, ckpt, checkpoint, 'strict')
        model.load_state_dict(ckpt.get('state_dict', ckpt))
    return cfg, model.eval(), scope


def exportable(model, scope: str, whole: bool = True, seg_logits: bool = False) -> nn.Module:
    """The ``input -> results`` module of a built model (the contract in
    ``docs/en/deployment.md``), in eval mode; its ``task`` says what it is. Adaptive pooling is
    made exportable in place."""
    task = task_for_scope(scope, whole)
    swap_adaptive_pooling(model)
    return task.module(model, seg_logits=seg_logits).eval()


def free_size_range(height: int, width: int, detector: bool = False) -> Tuple[int, int]:
    """Sizes a program exported at ``height x width`` accepts.

    ``torch.export`` reasons about every size derived from the input's; where the example has a
    window count of 1 (QnA-ViT's 14x14 windows at stride 16, DGT's groups) it special-cases that
    count and the program stays fixed to the example. From a 256 x 256 example up every count is
    >= 2 and 240 .. 4096 stays free; smaller examples get 64 .. 4096 (every stride-32 map at least
    2 wide; enough for DilateFormer and SG-Former, while QnA-ViT and DGT then refuse with torch's
    constraint error). A detector's RPN has a stride-64 level, which must be >= 2 wide too: from
    128 up (or from the example's size, if smaller)."""
    lo = 240 if min(height, width) >= 256 else 64
    if detector:
        lo = max(lo, min(128, height, width))
    return lo, 4096


def export_program(module: nn.Module, x: torch.Tensor):
    """``torch.export`` of a module from :func:`exportable` with free height and width.

    Non-strict tracing; guards that symbolic reasoning cannot prove for the whole range (most are
    divisibility facts true by construction, e.g. a padded size is a multiple of its window)
    become runtime checks instead of failing the export."""
    require('torch.export with free height and width')
    lo, hi = free_size_range(*x.shape[-2:], detector=module.task is DETECTOR)
    dims = ({2: torch.export.Dim('height', min=lo, max=hi),
             3: torch.export.Dim('width', min=lo, max=hi)}, )
    with exporting('export'):
        return torch.export.export(module, (x, ), dynamic_shapes=dims, strict=False,
                                   prefer_deferred_runtime_asserts_over_guards=True)


def export_metadata(cfg, model, module: nn.Module, scope: str) -> dict:
    """What :class:`mmvit_ext.deployment.OnnxModel` needs to run the file on an image, checked as
    OnnxModel will check it (:mod:`.metadata`)."""
    from mmengine.config import ConfigDict
    task = module.task
    meta = dict(kind=task.name, scope=scope, input=task.input_kind,
                family=type(model.backbone).__name__)
    loader = cfg.get('test_dataloader') or {}
    dataset = loader.get('dataset', {}) if loader else {}
    while 'dataset' in dataset:  # wrappers (ConcatDataset, RepeatDataset, ...)
        dataset = dataset['dataset']
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline') or []
    meta['test_pipeline'] = [p.to_dict() if isinstance(p, ConfigDict) else dict(p)
                             for p in pipeline]
    info = dict(dataset.get('metainfo') or {})
    if not info.get('classes') and dataset.get('type'):
        from mmengine.registry import DATASETS, DefaultScope
        with DefaultScope.overwrite_default_scope(scope):
            cls = DATASETS.get(dataset['type'])
        info = dict(getattr(cls, 'METAINFO', {}) or {})
    meta['classes'] = list(info.get('classes') or [])
    meta['palette'] = [list(p) for p in info.get('palette') or []]
    meta.update(task.metadata(module))
    # as the file will hold it (JSON), and what OnnxModel will accept: refused now rather than
    # after the export
    return check_metadata(json.loads(json.dumps(meta)), 'the config')


def check_detector_opset(opset: int) -> None:
    if opset < 16:
        raise ValueError(f'whole-detector export needs opset >= 16 (RoiAlign with '
                         f'coordinate_transformation_mode), got --opset {opset}')


def export_onnx(module: nn.Module, x: torch.Tensor, out: str, meta: dict,
                exporter: str = 'torchscript', opset: int = 17, dynamic: bool = True,
                optimize: bool = True) -> List[str]:
    """Write ``module`` (from :func:`exportable`) at example input ``x`` to ``out`` with the
    TorchScript-based exporter (opset ``opset``) or the dynamo one (from a ``torch.export``
    program; opset >= 18), ``meta`` in the file's metadata; -> output names."""
    from .nms_roi_align import ONNX_TRANSLATIONS
    task = module.task
    if task is DETECTOR:
        check_detector_opset(opset)
    with torch.no_grad():
        names = task.output_names(len(as_tuple(module(x))))
    program = export_program(module, x) if exporter == 'dynamo' and dynamic else module
    import onnx
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with atomic_write(out) as tmp:  # complete or not at all, never through a symbolic link
        with torch.no_grad(), warnings.catch_warnings(), \
                exporting('torchscript' if exporter == 'torchscript' else 'dynamo'):
            warnings.simplefilter('ignore')
            if exporter == 'torchscript':
                torch.onnx.export(module, (x, ), tmp, dynamo=False, opset_version=opset,
                                  input_names=['input'], output_names=names,
                                  dynamic_axes=task.dynamic_axes(names) if dynamic else None)
            else:
                torch.onnx.export(program, (x, ), tmp, dynamo=True,
                                  opset_version=max(opset, 18), input_names=['input'],
                                  output_names=names, custom_translation_table=ONNX_TRANSLATIONS,
                                  optimize=optimize)
        model = onnx.load(tmp)
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save(model, tmp)
    return names


def used_operators(path: str) -> List[str]:
    """The ONNX operator types in a file (domain-qualified where not the standard one)."""
    import onnx
    graph = onnx.load(path).graph
    found = set()

    def walk(g):
        for node in g.node:
            found.add(node.op_type if node.domain in ('', 'ai.onnx') else
                      f'{node.domain}::{node.op_type}')
            for attr in node.attribute:
                if attr.g is not None and attr.g.node:
                    walk(attr.g)
                for sub in attr.graphs:
                    walk(sub)
    walk(graph)
    return sorted(found)
