"""An exported file in onnxruntime or OpenVINO, giving mmdet / mmseg / mmpretrain results back.

    from mmvit_ext.deployment import OnnxModel
    model = OnnxModel('mask-rcnn.onnx')
    result = model('demo.jpg')          # a DetDataSample at the image's own size
    model.show(result, 'demo.jpg', 'vis.png')

The file carries what it needs in its metadata (key ``mmvit_ext``, JSON, written by
``tools/deployment/export_onnx.py``): the kind of model, the config's test pipeline, the class
names and palette, and the detector's ``mask_thr_binary``. The metadata is checked before use and
the pipeline is built only from registered transforms (:mod:`.metadata`: a file never runs code).
The test pipeline is run by the framework's own transforms, so the image reaching the graph is
the one ``inference_detector`` / ``inference_model`` would build; the task of the file
(:mod:`.tasks`) turns the outputs back into the framework's data sample. The output contract is
in ``docs/en/deployment.md``.
"""
from typing import Dict, Optional

import numpy as np

from ..errors import Refusal
from .metadata import METADATA_KEY, ModelFileError, build_test_pipeline, read_metadata
from .sessions import open_session
from .tasks import task_named

__all__ = ['OnnxModel', 'UnreadableImageError']


class UnreadableImageError(Refusal, ValueError):
    """An image that is missing, empty or not an image."""


class OnnxModel:
    """An exported file in a runtime: ``model(image)`` -> a data sample.

    ``runtime``: 'onnxruntime' (default) or 'openvino' (:mod:`.sessions`); ``threads``: the
    runtime's intra-op threads (None: its default, all cores); ``precision``: OpenVINO's CPU
    precision, 'f32' unless asked (its plugin's own choice, ``'plugin'``, is bf16 on CPUs with
    bf16, and changes the detections)."""

    def __init__(self, path: str, threads: Optional[int] = None, runtime: str = 'onnxruntime',
                 precision: str = 'f32'):
        self.session = open_session(path, runtime, threads, precision)
        if self.session.metadata is None:
            raise ModelFileError(f'{path} has no {METADATA_KEY} metadata: export it with '
                                 f'tools/deployment/export_onnx.py')
        self.path, self.meta = path, read_metadata(self.session.metadata, path)
        self.runtime = runtime
        self.task = task_named(self.meta['kind'])
        self.output_names = self.session.output_names
        self._pipeline = None

    # ------------------------------------------------------------------ steps
    def pipeline(self):
        """The config's test pipeline (annotation loading removed), taking a file or an array."""
        if self._pipeline is None:
            self._pipeline = build_test_pipeline(self.meta, self.path)
        return self._pipeline

    def preprocess(self, image):
        """(pixels (1, 3, H, W) float32, meta) of an image file or a BGR HxWx3 uint8 array
        (an array skips the pipeline's loading step, as the frameworks' ndarray loaders do)."""
        if not isinstance(image, np.ndarray):  # read here: a bad file is named in one line
            import mmcv
            path = image
            try:
                image = mmcv.imread(path)
            except Exception as err:  # noqa: BLE001  (mmcv's own errors for each case)
                raise UnreadableImageError(f'cannot read image {path}: {err}') from None
            if image is None or image.size == 0:
                raise UnreadableImageError(f'cannot read image {path}: it is empty or not an '
                                           'image file')
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UnreadableImageError(f'an image array must be H x W x 3 uint8 (BGR), got '
                                       f'{image.shape} {image.dtype}')
        data = dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2],
                    img_path=None)
        for step in self.pipeline().transforms[1:]:
            data = step(data)
        pixels = data['inputs'][None].float().numpy()
        return pixels, dict(data['data_samples'].metainfo)

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        fixed = self.session.input_shape[2:]
        if all(isinstance(d, int) for d in fixed) and tuple(pixels.shape[2:]) != tuple(fixed):
            raise ModelFileError(
                f'{self.path} was exported for {fixed[0]}x{fixed[1]} inputs only, and this image '
                f'is {pixels.shape[2]}x{pixels.shape[3]} after the test pipeline: export with '
                '--dynamic, or give images that the pipeline brings to that size')
        return self.session.run(pixels)

    def postprocess(self, outputs: Dict[str, np.ndarray], meta: dict,
                    score_thr: Optional[float] = None):
        """The framework's data sample from the graph's outputs (detections below
        ``score_thr`` left out, their masks never pasted)."""
        return self.task.to_sample(self.task.select(outputs, score_thr), meta, self.meta)

    def __call__(self, image, score_thr: Optional[float] = None):
        pixels, meta = self.preprocess(image)
        return self.postprocess(self.run(pixels), meta, score_thr)

    # ------------------------------------------------------------------ reading the result
    def class_name(self, index: int) -> str:
        classes = self.meta.get('classes') or []
        return classes[index] if 0 <= index < len(classes) else str(index)

    def summary(self, sample, score_thr: float = 0.3):
        """Lines that say what ``sample`` holds, with class names."""
        return self.task.summary(sample, self.class_name, score_thr)

    def show(self, sample, image, out_file: str, score_thr: float = 0.3) -> None:
        """Draw ``sample`` on ``image`` with the framework's own visualiser."""
        import mmcv
        img = mmcv.imread(image) if isinstance(image, str) else image
        rgb = np.ascontiguousarray(img[..., ::-1])
        meta = dict(classes=tuple(self.meta.get('classes') or ()))
        if self.meta.get('palette'):
            meta['palette'] = [tuple(p) for p in self.meta['palette']]
        self.task.show(sample, rgb, out_file, meta, f'onnx_{id(self)}', score_thr)
