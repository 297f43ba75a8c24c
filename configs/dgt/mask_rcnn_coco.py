# Short entry point: Mask R-CNN 1x with the DGT-style tiny backbone on COCO.
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './mask-rcnn_dgt-t_fpn_1x_coco.py'
