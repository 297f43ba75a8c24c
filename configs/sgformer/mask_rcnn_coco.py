# Short entry point: Mask R-CNN 1x with SG-Former-S on COCO.
_base_ = './mask-rcnn_sgformer-s_fpn_1x_coco.py'
