"""What every kind of exported model has: a task object says how its graph is built, what the
file's outputs are called, how the file is checked against the framework's own ``predict`` and
how its outputs become the framework's data sample again. One subclass per task
(:mod:`.detector`, :mod:`.segmentor`, :mod:`.classifier`, :mod:`.backbone`); the name is what
the file's metadata calls it (``kind``)."""
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from ..compare import max_relative_differences, near_tie, self_drift

__all__ = ['Task']


class Task:
    """Base of the tasks (see the module doc). Subclasses set :attr:`name`, :attr:`scope` (the
    framework whose models it exports, None for any) and implement :meth:`module`."""

    name: str = ''
    scope: Optional[str] = None
    input_kind = 'pixels'  # the graph's input: pixels 0..255, or 'normalised' (a backbone)
    #: whether a file of random weights is judged too (a random detector's detections are ties)
    checked_with_random_weights = True

    @property
    def file_scopes(self) -> tuple:
        """The framework scopes a file of this task may name (its pipeline's transforms)."""
        return (self.scope, ) if self.scope else ('mmdet', 'mmseg', 'mmpretrain')

    def check_file_fields(self, meta: Dict) -> Optional[str]:
        """What is wrong with the task's own fields of a file's metadata, or None."""
        return None

    # ------------------------------------------------------------------ the graph
    def module(self, model, **options) -> nn.Module:
        """The ``input -> results`` module of a built model (the contract in
        ``docs/en/deployment.md``)."""
        raise NotImplementedError

    def routes(self, module: nn.Module) -> bool:
        """Whether discrete choices decide the outputs: a backbone whose ``routes_tokens`` says
        so (SG-Former, DGT); detectors also rank and suppress boxes."""
        model = getattr(module, 'model', module)
        return bool(getattr(getattr(model, 'backbone', model), 'routes_tokens', False))

    def input_of(self, module: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
        """The graph's input for (1, 3, H, W) float pixels 0..255: the pixels themselves."""
        return pixels

    def describe(self, module: nn.Module) -> str:
        """What the file holds, for the export tool's first line."""
        return self.name

    def output_names(self, count: int) -> List[str]:
        raise NotImplementedError

    def dynamic_axes(self, names: Sequence[str]) -> Dict:
        """TorchScript exporter's ``dynamic_axes``: free height and width, and free counts."""
        return {'input': {2: 'height', 3: 'width'}}

    def metadata(self, module: nn.Module) -> Dict:
        """The task's own fields of the file's metadata."""
        return {}

    # ------------------------------------------------------------------ checking
    def reference_sample(self, model, pixels: np.ndarray, meta: dict):
        """The framework's own ``test_step`` (data preprocessor, ``predict``, rescale) on an HxWx3
        BGR uint8 image that the test pipeline has already resized; ``meta``: its metainfo."""
        inputs = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        with torch.no_grad():
            return model.test_step(dict(inputs=[inputs],
                                        data_samples=[self.sample_type()(metainfo=meta)]))[0]

    def sample_type(self):
        raise NotImplementedError

    def check(self, module, model, got: List[np.ndarray], eager, x: torch.Tensor,
              pixels: np.ndarray, image: np.ndarray, shape: Sequence[int], rtol: float) -> Dict:
        """The verdict at one size: ``got`` (the other runtime's outputs) against eager
        PyTorch's ``eager`` and, where the task has one, the framework's ``predict``. The base
        rule: every output within ``rtol`` of eager, or a routing near-tie."""
        raw = max_relative_differences(got, eager)
        size = f'{shape[0]}x{shape[1]}'
        worst = max(raw)
        ok, drift, tie = worst <= rtol, None, False
        if not ok:
            drift = self_drift(module, x, eager)
            tie = ok = near_tie(worst, drift)
        raw = raw + self.extra_differences(model, got, pixels, shape)
        worst = max(raw)
        ok = ok and (worst <= rtol or tie)
        line = f'outputs at {size}: max relative difference {worst:.2e} (<= {rtol:.0e} required)'
        if tie:
            line += (f'; routing near-tie: PyTorch itself moves by {drift:.2e} under '
                     'rounding-size input changes, and the exported model is no further from it')
        return dict(ok=ok, line=line, raw=raw, size=size)

    def extra_differences(self, model, got, pixels, shape) -> List[float]:
        """Differences from the framework's own results, beyond eager's raw outputs."""
        return []

    # ------------------------------------------------------------------ running a file
    def select(self, outputs: Dict[str, np.ndarray], score_thr: Optional[float]):
        """The outputs worth turning into a sample (a detector's from ``score_thr``)."""
        return outputs

    def to_sample(self, outputs: Dict[str, np.ndarray], meta: dict, file_meta: dict):
        """The framework's data sample (original image's frame) from a file's named outputs."""
        raise NotImplementedError(f'a {self.name} export has no data sample form: use run()')

    def summary(self, sample, name, score_thr: float) -> List[str]:
        """Lines that say what ``sample`` holds (``name(i)``: a class name)."""
        raise NotImplementedError(f'a {self.name} export (feature maps) has no result to '
                                  'print: run it with OnnxModel(path).run(pixels)')

    def show(self, sample, rgb: np.ndarray, out_file: str, dataset_meta: dict, name: str,
             score_thr: float) -> None:
        """Draw ``sample`` on ``rgb`` with the framework's own visualiser."""
        raise NotImplementedError(f'a {self.name} export has nothing to draw')
