"""Deployment: whole models as one graph from image to final results, exported to ONNX and run
in onnxruntime (the contract: ``docs/en/deployment.md``).

- :mod:`.end2end`: ``input -> results`` modules (detector ``dets`` / ``labels`` / ``masks``,
  segmentor label map, classifier scores, backbone features) and :func:`exportable`;
- :mod:`.rewrites`: what does not trace, replaced by forms with the same values (the context
  :func:`export_rewrites`);
- :mod:`.ops`: NMS and RoIAlign as torch operators on mmcv's kernels, with ONNX forms;
- :mod:`.export`: building, writing and checking a file; :mod:`.compare`: the verdicts;
- :mod:`.runtime`: :class:`OnnxModel`, an exported file in onnxruntime returning data samples;
- :mod:`.metadata`: the file's metadata checked, its pipeline built from registered transforms.

Importing this package needs torch >= 2.5 (``torch.library.custom_op``); it says so in one
line on older torch.
"""
from .compare import (NEAR_TIE, PERTURBATION, as_tuple, label_agreement, match_detections,
                      max_relative_differences, near_tie, routes, self_drift)
from .end2end import exportable, model_kind, output_names
from .export import (build_for_export, check_size, example_image, export_metadata, export_onnx,
                     export_program, free_size_range, median_latency, module_input,
                     reference_sample, used_operators)
from .rewrites import (PlainAdaptiveAvgPool2d, check_detector_opset, export_rewrites,
                       plain_adaptive_avg_pool2d, swap_adaptive_pooling)
from .metadata import ModelFileError, check_metadata, read_metadata
from .runtime import OnnxModel, detections_to_sample, paste_masks

__all__ = ['NEAR_TIE', 'PERTURBATION', 'as_tuple', 'label_agreement', 'match_detections',
           'max_relative_differences', 'near_tie', 'routes', 'self_drift', 'exportable',
           'model_kind', 'output_names', 'build_for_export', 'check_size', 'example_image',
           'export_metadata', 'export_onnx', 'export_program', 'free_size_range',
           'median_latency', 'module_input', 'reference_sample', 'used_operators',
           'PlainAdaptiveAvgPool2d', 'check_detector_opset', 'export_rewrites',
           'plain_adaptive_avg_pool2d', 'swap_adaptive_pooling', 'OnnxModel',
           'detections_to_sample', 'paste_masks', 'ModelFileError', 'check_metadata',
           'read_metadata']
