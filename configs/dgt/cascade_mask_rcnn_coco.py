# Short entry point: Cascade Mask R-CNN 3x (multi-scale crop) with the DGT-style tiny backbone.
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './cascade-mask-rcnn_dgt-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
