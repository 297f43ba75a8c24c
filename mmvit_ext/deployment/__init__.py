"""Deployment: whole models as one graph from image to final results, exported to ONNX and run
in onnxruntime (the contract: ``docs/en/deployment.md``).

- :mod:`.tasks`: one class per task (detector, segmentor, classifier, backbone): the
  ``input -> results`` module, the file's output names, the check against the framework's
  ``predict``, and the way back to its data sample;
- :mod:`.detection_graph`, :mod:`.preprocess`, :mod:`.adaptive_pooling`: the pieces of the
  graphs written to trace with the input size free;
- :mod:`.nms_roi_align`: NMS and RoIAlign as torch operators on mmcv's kernels, with ONNX forms;
- :mod:`.rewriter`, :mod:`.rewrites`: what export changes, registered by what it replaces and
  applied only inside :func:`exporting`;
- :mod:`.export`: building and writing a file; :mod:`.checks` and :mod:`.compare`: the checks;
- :mod:`.metadata`, :mod:`.runtime`, :mod:`.sessions`: :class:`OnnxModel`, an exported file
  in onnxruntime or OpenVINO returning data samples (a file's metadata checked, never run).

Importing this package needs torch >= 2.5 (``torch.library.custom_op``); it says so in one
line on older torch.
"""
from . import rewrites  # noqa: F401  (registers the export rewrites)
from .adaptive_pooling import (PlainAdaptiveAvgPool2d, plain_adaptive_avg_pool2d,
                               swap_adaptive_pooling)
from .checks import (check_export_memory, check_size, example_image, median_latency, module_input,
                     resized)
from .compare import (NEAR_TIE, PERTURBATION, as_tuple, label_agreement, match_detections,
                      max_relative_differences, near_tie, self_drift)
from .export import (build_for_export, check_detector_opset, export_metadata, export_onnx,
                     export_program, exportable, free_size_range, used_operators)
from .metadata import ModelFileError, check_metadata, read_metadata
from .rewriter import exporting
from .runtime import OnnxModel
from .tasks import TASKS, Task, task_for_scope, task_named
from .tasks.detector import detections_to_sample, paste_masks

__all__ = ['NEAR_TIE', 'PERTURBATION', 'as_tuple', 'label_agreement', 'match_detections',
           'max_relative_differences', 'near_tie', 'self_drift', 'exportable', 'build_for_export',
           'check_size', 'example_image', 'resized', 'export_metadata', 'export_onnx',
           'export_program', 'free_size_range', 'median_latency', 'module_input',
           'used_operators', 'PlainAdaptiveAvgPool2d', 'check_detector_opset', 'exporting',
           'plain_adaptive_avg_pool2d', 'swap_adaptive_pooling', 'OnnxModel',
           'detections_to_sample', 'paste_masks', 'ModelFileError', 'check_metadata',
           'read_metadata', 'TASKS', 'Task', 'task_for_scope', 'task_named', 'check_export_memory']
