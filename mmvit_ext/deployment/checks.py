"""Checking another runtime (an ONNX file in onnxruntime, a ``torch.export`` program, a compiled
or traced module) against eager PyTorch and the framework's own ``predict``, at one input size
(the verdict is the task's: :meth:`mmvit_ext.deployment.tasks.base.Task.check`)."""
import os
import statistics
import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .compare import as_numpy, as_tuple

__all__ = ['example_image', 'resized', 'module_input', 'check_size', 'median_latency',
           'attention_matrix_elements', 'check_export_memory']


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
            raise FileNotFoundError(f'cannot read image {image}: it is missing, empty or not an '
                                    'image file')
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


def attention_matrix_elements(module: nn.Module, x: torch.Tensor) -> int:
    """The elements of the largest attention matrix (batch x heads x queries x keys) that the
    exported graph of ``module`` holds at input ``x``: eager PyTorch fuses attention without it,
    but ONNX has no fused attention, so onnxruntime materialises each one."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        found = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if 'scaled_dot_product' in str(func) and len(args) >= 2:
                q, k = args[0], args[1]
                if torch.is_tensor(q) and torch.is_tensor(k) and q.dim() >= 2:
                    Largest.found = max(Largest.found,
                                        q.numel() // q.shape[-1] * k.shape[-2])
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Largest():
        module(x)
    return Largest.found


def physical_memory_bytes() -> int:
    try:
        return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (AttributeError, ValueError, OSError):  # not POSIX: no estimate
        return 0


def check_export_memory(module: nn.Module, image: np.ndarray, shape: Sequence[int],
                        probe_pixels: int = 256 * 320) -> Optional[str]:
    """Why exporting ``module`` at ``shape`` cannot run on this machine, or None.

    Attention matrices grow with the square of the image area: measured at a small probe of the
    same aspect and scaled, and compared with the machine's memory (the onnxruntime check holds
    the matrix, its softmax and the product's input, about three copies in fp32)."""
    H, W = int(shape[0]), int(shape[1])
    scale = min(1., (probe_pixels / float(H * W))**0.5)
    probe = (max(32, int(round(H * scale / 32)) * 32), max(32, int(round(W * scale / 32)) * 32))
    elements = attention_matrix_elements(module, module_input(module, resized(image, probe)))
    ratio = (H * W) / float(probe[0] * probe[1])
    need = 3 * 4 * elements * ratio**2
    have = physical_memory_bytes()
    if not have or need <= 0.8 * have:
        return None
    fits = (0.8 * have / need)**0.25  # the side scale at which it would fit
    return (f'--shape {H} {W} cannot be exported and checked on this machine: its graph holds '
            f'attention matrices of about {need / 2**30:.0f} GiB in onnxruntime (measured at '
            f'{probe[0]}x{probe[1]} and scaled), and the machine has {have / 2**30:.0f} GiB. '
            f'Export at about --shape {int(H * fits) // 32 * 32} {int(W * fits) // 32 * 32} or '
            'smaller; with --dynamic the file still takes other sizes')
