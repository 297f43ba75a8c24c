# Short entry point: Cascade Mask R-CNN 3x (multi-scale crop, 4conv1fc GIoU) with DilateFormer-S.
_base_ = './cascade-mask-rcnn_dilateformer-s_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
