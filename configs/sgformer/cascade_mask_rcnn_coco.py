# Short entry point: Cascade Mask R-CNN 3x (multi-scale crop) with SG-Former-S on COCO.
_base_ = './cascade-mask-rcnn_sgformer-s_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
