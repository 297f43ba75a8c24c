"""Building a config's model for export, writing the ONNX file, and checking it against the
framework's own ``predict`` (what ``tools/deployment/export_onnx.py`` runs)."""
import json
import statistics
import time
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from .compare import (LABEL_AGREEMENT, _as_numpy, as_tuple, label_agreement, match_detections,
                      max_relative_differences, near_tie, self_drift)
from .end2end import dynamic_axes, output_names
from .rewrites import export_rewrites
from .metadata import METADATA_KEY, check_metadata
from .runtime import outputs_to_sample

__all__ = ['build_for_export', 'example_image', 'module_input', 'free_size_range', 'used_operators',
           'export_program', 'export_onnx', 'export_metadata', 'reference_sample',
           'check_size', 'median_latency']


def build_for_export(config: str, checkpoint: Optional[str] = None):
    """``(cfg, model, scope)`` of a config file (or installed config name) as the export tools
    take it: random weights seeded with 0, or ``checkpoint`` loaded strictly (a checkpoint that
    does not fit is an error naming the keys)."""
    from mmengine.config import Config

    from mmvit_ext.utils.build import build_model_from_cfg
    from mmvit_ext.utils.runner_setup import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    torch.manual_seed(0)
    model, scope = build_model_from_cfg(cfg)
    if checkpoint:
        from mmvit_ext.engine.guards import check_checkpoint_fits
        from mmvit_ext.utils.safe_load import safe_torch_load
        ckpt = safe_torch_load(checkpoint, map_location='cpu')
        check_checkpoint_fits(model, ckpt, checkpoint, 'strict')
        model.load_state_dict(ckpt.get('state_dict', ckpt))
    return cfg, model.eval(), scope


def example_image(image: Optional[str] = None) -> np.ndarray:
    """A BGR uint8 image as mmcv loads one: ``image`` (a file), ``'noise'`` (uniform noise, 480 x
    640: no flat regions, so no tokens tied by symmetry), or None (a generated image of the
    built-in small COCO set, 480 x 640)."""
    if image == 'noise':
        return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    if image:
        import cv2
        img = cv2.imread(image, cv2.IMREAD_COLOR)
        if img is None:
            raise FileNotFoundError(f'cannot read image {image}')
        return img
    from mmvit_ext.datasets.small import _render, _sample_scene
    rng = np.random.default_rng(0)
    rgb = np.asarray(_render(rng, 480, 640, _sample_scene(rng, 480, 640, 3, 80, 200))[0])
    return np.ascontiguousarray(rgb[..., ::-1])


def resized(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    import cv2
    return cv2.resize(image, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def module_input(module: nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """The exported module's input for an HxWx3 BGR uint8 image: pixels (1, 3, H, W) float32
    for a whole model; for a backbone, normalised as the data preprocessor does (no padding)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].float()
    if module.kind != 'backbone':
        return x
    from .end2end import Preprocess
    pre = Preprocess(module.model.data_preprocessor)
    pre.divisor = 1
    return pre(x)


# ----------------------------------------------------------------------------- torch.export
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
    """``torch.export`` of a module from :func:`mmvit_ext.deployment.exportable` with free
    height and width.

    Non-strict tracing; guards that symbolic reasoning cannot prove for the whole range (most are
    divisibility facts true by construction, e.g. a padded size is a multiple of its window)
    become runtime checks instead of failing the export."""
    from mmvit_ext.utils.torch_features import require
    require('torch.export with free height and width')
    lo, hi = free_size_range(*x.shape[-2:], detector=module.kind == 'detector')
    dims = ({2: torch.export.Dim('height', min=lo, max=hi),
             3: torch.export.Dim('width', min=lo, max=hi)}, )
    with export_rewrites(None):
        return torch.export.export(module, (x, ), dynamic_shapes=dims, strict=False,
                                   prefer_deferred_runtime_asserts_over_guards=True)


# ----------------------------------------------------------------------------- ONNX
def export_metadata(cfg, model, module: nn.Module, scope: str) -> dict:
    """What :class:`mmvit_ext.deployment.OnnxModel` needs to run the file on an image."""
    from mmengine.config import ConfigDict
    meta = dict(kind=module.kind, scope=scope, input='pixels' if module.kind != 'backbone'
                else 'normalised', family=type(model.backbone).__name__)
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
    if module.kind == 'detector':
        meta['mask_thr_binary'] = float(module.test_cfg.get('mask_thr_binary', 0.5))
        meta['score_thr'] = float(module.test_cfg.score_thr)
        meta['max_per_img'] = int(module.test_cfg.max_per_img)
    # as the file will hold it (JSON), and what OnnxModel will accept: refused now rather than
    # after the export
    return check_metadata(json.loads(json.dumps(meta)), 'the config')


def export_onnx(module: nn.Module, x: torch.Tensor, out: str, meta: dict,
                exporter: str = 'torchscript', opset: int = 17, dynamic: bool = True,
                optimize: bool = True) -> List[str]:
    """Write ``module`` (from :func:`mmvit_ext.deployment.exportable`) at example input ``x`` to
    ``out`` with the TorchScript-based exporter (opset ``opset``) or the dynamo one (from a
    ``torch.export`` program; opset >= 18), ``meta`` in the file's metadata; -> output names."""
    from .ops import ONNX_TRANSLATIONS
    with torch.no_grad(), export_rewrites(opset if module.kind == 'detector' else None):
        names = output_names(module, len(as_tuple(module(x))))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            if exporter == 'torchscript':
                torch.onnx.export(module, (x, ), out, dynamo=False, opset_version=opset,
                                  input_names=['input'], output_names=names,
                                  dynamic_axes=dynamic_axes(module, names) if dynamic else None)
            else:
                program = export_program(module, x) if dynamic else module
                torch.onnx.export(program, (x, ), out, dynamo=True,
                                  opset_version=max(opset, 18), input_names=['input'],
                                  output_names=names, custom_translation_table=ONNX_TRANSLATIONS,
                                  optimize=optimize)
    import onnx
    model = onnx.load(out)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, out)
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


# ----------------------------------------------------------------------------- checks
def reference_sample(model, kind: str, pixels: np.ndarray, meta: dict):
    """The framework's own ``test_step`` (data preprocessor, ``predict``, rescale) on an HxWx3 BGR
    uint8 image that the test pipeline has already resized; ``meta``: its metainfo."""
    inputs = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    if kind == 'detector':
        from mmdet.structures import DetDataSample as Sample
    elif kind == 'segmentor':
        from mmseg.structures import SegDataSample as Sample
    else:
        from mmpretrain.structures import DataSample as Sample
    with torch.no_grad():
        return model.test_step(dict(inputs=[inputs], data_samples=[Sample(metainfo=meta)]))[0]


def check_size(module: nn.Module, model, run: Callable, image: np.ndarray,
               shape: Sequence[int], rtol: float = 1e-4, meta_extra: Optional[dict] = None
               ) -> dict:
    """Compare another runtime (``run``: the input tensor, on the module's device -> its outputs
    in the file's order) with eager PyTorch at one input size: ``image`` resized to ``shape``.

    - detector: final detections against ``model.predict`` in the original image's frame
      (:func:`mmvit_ext.deployment.match_detections`);
    - segmentor: label maps at the input size, agreement >= 99.9% of pixels;
    - classifier, backbone: outputs within ``rtol`` of eager, or a routing near-tie.

    -> dict(ok, line (what to print), raw (max relative differences of the raw outputs))."""
    kind = module.kind
    pixels = resized(image, shape)
    x = module_input(module, pixels).to(next(module.parameters()).device)
    got = [_as_numpy(g) for g in as_tuple(run(x))]
    with torch.no_grad(), export_rewrites(None):
        eager = as_tuple(module(x))
    raw = max_relative_differences(got, eager)
    names = output_names(module, len(got))
    size = f'{shape[0]}x{shape[1]}'
    if kind == 'detector':
        h0, w0 = image.shape[:2]
        meta = dict(img_shape=tuple(shape), ori_shape=(h0, w0),
                    scale_factor=(shape[1] / w0, shape[0] / h0))
        ref = reference_sample(model, kind, pixels, meta)
        mine = outputs_to_sample(kind, dict(zip(names, got)), meta,
                           float(module.test_cfg.get('mask_thr_binary', 0.5)))
        m = match_detections(mine, ref, module.test_cfg.score_thr, module.test_cfg.max_per_img)
        line = (f'detections at {size} vs mmdet predict: {m["matched"]} matched of '
                f'{m["reference"]}, {m["missing"]} missing, {m["extra"]} extra '
                f'({m["at_cut"]} of them at the score cut); worst box IoU '
                f'{m["worst_box_iou"]:.4f}, mask IoU {m["worst_mask_iou"]:.4f}, score gap '
                f'{m["worst_score_gap"]:.1e}')
        return dict(ok=m['ok'], line=line, raw=raw, match=m, size=size)
    if kind == 'segmentor':
        meta = dict(img_shape=tuple(shape), ori_shape=tuple(shape))
        ref = reference_sample(model, kind, pixels, meta)
        agree = label_agreement(got[0], ref.pred_sem_seg.data)
        line = (f'label map at {size} vs mmseg predict: {agree * 100:.3f}% of pixels agree '
                f'(>= {LABEL_AGREEMENT * 100:.1f}% required)')
        return dict(ok=agree >= LABEL_AGREEMENT, line=line, raw=raw, agreement=agree, size=size)
    worst = max(raw)
    ok, drift, tie = worst <= rtol, None, False
    if not ok:
        drift = self_drift(module, x, eager)
        tie = ok = near_tie(worst, drift)
    if kind == 'classifier':
        meta = dict(img_shape=tuple(shape), ori_shape=tuple(shape))
        ref = reference_sample(model, kind, pixels, meta)
        raw.append(max_relative_differences([got[0][0]], [ref.pred_score])[0])
        worst = max(raw)
        ok = ok and (worst <= rtol or tie)
    line = f'outputs at {size}: max relative difference {worst:.2e} (<= {rtol:.0e} required)'
    if tie:
        line += (f'; routing near-tie: PyTorch itself moves by {drift:.2e} under rounding-size '
                 f'input changes, and the exported model is no further from it')
    return dict(ok=ok, line=line, raw=raw, size=size)


def median_latency(fn: Callable, runs: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
