"""Running an exported file in onnxruntime and getting mmdet / mmseg / mmpretrain results back.

    from mmvit_ext.deployment import OnnxModel
    model = OnnxModel('mask-rcnn.onnx')
    result = model('demo.jpg')          # a DetDataSample at the image's own size
    model.show(result, 'demo.jpg', 'vis.png')

The file carries what it needs in its metadata (key ``mmvit_ext``, JSON, written by
``tools/deployment/export_onnx.py``): the kind of model, the config's test pipeline, the class
names and palette, and the detector's ``mask_thr_binary``. The metadata is checked before use and
the pipeline is built only from registered transforms (:mod:`.metadata`: a file never runs code).
The test pipeline is run by the framework's own transforms, so the image reaching the graph is
the one ``inference_detector`` / ``inference_model`` would build. The output contract is in
``docs/en/deployment.md``.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .metadata import METADATA_KEY, ModelFileError, build_test_pipeline, read_metadata

__all__ = ['OnnxModel', 'paste_masks', 'detections_to_sample', 'outputs_to_sample',
           'METADATA_KEY']

def paste_masks(probs, boxes, height: int, width: int, threshold: float = 0.5) -> torch.Tensor:
    """(N, height, width) bool masks from (N, 28, 28) box-relative probabilities and (N, 4)
    boxes in the same frame as (height, width): mmdet's ``FCNMaskHead`` paste-back (bilinear
    ``grid_sample`` of each mask over its box, align_corners=False, zero outside), one box at a
    time as mmdet does on the CPU, then ``>= threshold``."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    probs, boxes = torch.as_tensor(probs).float(), torch.as_tensor(boxes).float()
    out = torch.zeros((len(probs), height, width), dtype=torch.bool)
    for i in range(len(probs)):
        chunk, where = _do_paste_mask(probs[i:i + 1, None], boxes[i:i + 1], height, width,
                                      skip_empty=True)
        out[(slice(i, i + 1), ) + where] = chunk >= threshold
    return out


def detections_to_sample(dets, labels, masks, meta: dict, mask_thr: float = 0.5):
    """A ``DetDataSample`` in the original image's frame from the graph's outputs in the input's
    frame: boxes divided by ``meta['scale_factor']`` (w, h), masks pasted at
    ``meta['ori_shape']`` (what mmdet's ``predict(rescale=True)`` returns)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    dets = torch.as_tensor(np.asarray(dets)).float().reshape(-1, 5)
    sx, sy = meta.get('scale_factor', (1., 1.))
    boxes = dets[:, :4] / dets.new_tensor([sx, sy, sx, sy])
    inst = InstanceData(bboxes=boxes, scores=dets[:, 4],
                        labels=torch.as_tensor(np.asarray(labels)).long().reshape(-1))
    if masks is not None:
        h, w = meta['ori_shape'][:2]
        inst.masks = paste_masks(np.asarray(masks), boxes, int(h), int(w), mask_thr)
    sample = DetDataSample(metainfo=meta)
    sample.pred_instances = inst
    return sample


class OnnxModel:
    """An exported file in an onnxruntime session: ``model(image)`` -> a data sample.

    ``threads``: onnxruntime's intra-op threads (None: its default, all cores)."""

    def __init__(self, path: str, threads: Optional[int] = None,
                 providers: Sequence[str] = ('CPUExecutionProvider', )):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError('onnxruntime is not installed: pip install -r '
                              'requirements/deploy.txt') from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(path, options, providers=list(providers))
        except Exception as err:  # ORT raises its own types; say which file and why in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(f'onnxruntime cannot load {path}: {first}') from None
        custom = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in custom:
            raise ModelFileError(f'{path} has no {METADATA_KEY} metadata: export it with '
                             f'tools/deployment/export_onnx.py')
        meta = read_metadata(custom[METADATA_KEY], path)
        self.path, self.meta, self.kind = path, meta, meta['kind']
        self.output_names = [o.name for o in self.session.get_outputs()]
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
        if isinstance(image, np.ndarray):
            data = dict(img=image, img_shape=image.shape[:2], ori_shape=image.shape[:2],
                        img_path=None)
            for step in self.pipeline().transforms[1:]:
                data = step(data)
        else:
            data = self.pipeline()(dict(img_path=image))
        pixels = data['inputs'][None].float().numpy()
        return pixels, dict(data['data_samples'].metainfo)

    def run(self, pixels: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = self.session.run(None, {self.session.get_inputs()[0].name: pixels})
        return dict(zip(self.output_names, outputs))

    def postprocess(self, outputs: Dict[str, np.ndarray], meta: dict):
        """The framework's data sample from the graph's outputs."""
        return outputs_to_sample(self.kind, outputs, meta, self.meta.get('mask_thr_binary', 0.5))

    def __call__(self, image):
        pixels, meta = self.preprocess(image)
        return self.postprocess(self.run(pixels), meta)

    # ------------------------------------------------------------------ drawing
    def show(self, sample, image, out_file: str, score_thr: float = 0.3) -> None:
        """Draw ``sample`` on ``image`` with the framework's own visualiser."""
        import mmcv
        img = mmcv.imread(image) if isinstance(image, str) else image
        rgb = np.ascontiguousarray(img[..., ::-1])
        meta = dict(classes=tuple(self.meta.get('classes') or ()))
        if self.meta.get('palette'):
            meta['palette'] = [tuple(p) for p in self.meta['palette']]
        name = f'onnx_{id(self)}'
        if self.kind == 'detector':
            from mmdet.visualization import DetLocalVisualizer
            vis = DetLocalVisualizer(name=name)
            vis.dataset_meta = meta
            vis.add_datasample('result', rgb, sample, draw_gt=False, pred_score_thr=score_thr,
                               out_file=out_file)
        elif self.kind == 'segmentor':
            from mmseg.visualization import SegLocalVisualizer
            vis = SegLocalVisualizer(name=name, alpha=0.5)
            vis.dataset_meta = meta
            vis.add_datasample('result', rgb, sample, draw_gt=False, out_file=out_file)
        else:
            from mmpretrain.visualization import UniversalVisualizer
            vis = UniversalVisualizer(name=name)
            vis.visualize_cls(rgb, sample, classes=meta['classes'] or None, out_file=out_file)


def outputs_to_sample(kind: str, outputs: Dict[str, np.ndarray], meta: dict,
                      mask_thr: float = 0.5):
    """The framework's data sample (original image's frame) from a file's named outputs."""
    if kind == 'detector':
        return detections_to_sample(outputs['dets'], outputs['labels'], outputs.get('masks'),
                                    meta, mask_thr)
    if kind == 'segmentor':
        return segmentation_to_sample(outputs['labels'], outputs.get('seg_logits'), meta)
    if kind == 'classifier':
        from mmpretrain.structures import DataSample
        scores = torch.from_numpy(np.asarray(outputs['scores'])[0])
        return DataSample(metainfo=meta).set_pred_score(scores).set_pred_label(
            scores.argmax(keepdim=True))
    raise ValueError(f'a {kind} export has no data sample form: use run()')


def segmentation_to_sample(labels, logits, meta: dict):
    """A ``SegDataSample`` at the original size: the graph's labels at the input size, resized
    to ``meta['ori_shape']`` through the logits when the file has them (mmseg's own order:
    bilinear logits, then argmax), else by nearest neighbour."""
    import torch.nn.functional as F
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    h, w = meta.get('ori_shape', np.asarray(labels).shape[-2:])[:2]
    sample = SegDataSample(metainfo=meta)
    if logits is not None:
        t = torch.from_numpy(np.asarray(logits))
        if tuple(t.shape[-2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode='bilinear', align_corners=False)
        sample.seg_logits = PixelData(data=t[0])
        label = t[0].argmax(0, keepdim=True)
    else:
        label = torch.from_numpy(np.asarray(labels)).long()
        if tuple(label.shape[-2:]) != (h, w):
            label = F.interpolate(label[None].float(), size=(h, w), mode='nearest')[0].long()
    sample.pred_sem_seg = PixelData(data=label.reshape(1, h, w))
    return sample
