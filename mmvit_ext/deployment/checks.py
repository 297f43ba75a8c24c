"""Checking another runtime (an ONNX file in onnxruntime, a ``torch.export`` program, a compiled
or traced module) against eager PyTorch and the framework's own ``predict``, at one input size
(the verdict is the task's: :meth:`mmvit_ext.deployment.tasks.base.Task.check`)."""
import statistics
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .compare import as_numpy, as_tuple

__all__ = ['example_image', 'resized', 'module_input', 'check_size', 'median_latency']


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
    from ..datasets.small import _render, _sample_scene
    rng = np.random.default_rng(0)
    rgb = np.asarray(_render(rng, 480, 640, _sample_scene(rng, 480, 640, 3, 80, 200))[0])
    return np.ascontiguousarray(rgb[..., ::-1])


def resized(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    import cv2
    return cv2.resize(image, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR)


def module_input(module: nn.Module, pixels: np.ndarray) -> torch.Tensor:
    """The exported module's input for an HxWx3 BGR uint8 image (its task decides: pixels
    (1, 3, H, W) float32, or normalised for a backbone)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].float()
    return module.task.input_of(module, x)


def check_size(module: nn.Module, model, run: Callable, image: np.ndarray,
               shape: Sequence[int], rtol: float = 1e-4) -> dict:
    """Compare another runtime (``run``: the input tensor, on the module's device -> its outputs
    in the file's order) with eager PyTorch at one input size: ``image`` resized to ``shape``.
    -> dict(ok, line (what to print), raw (max relative differences of the raw outputs), size,
    and the task's own details)."""
    pixels = resized(image, shape)
    x = module_input(module, pixels).to(next(module.parameters()).device)
    got = [as_numpy(g) for g in as_tuple(run(x))]
    with torch.no_grad():
        eager = as_tuple(module(x))
    return module.task.check(module, model, got, eager, x, pixels, image, shape, rtol)


def median_latency(fn: Callable, runs: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` runs, after one warm-up."""
    fn()
    times = []
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
