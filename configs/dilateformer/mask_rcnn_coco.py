# Short entry point: Mask R-CNN 1x with DilateFormer-S on COCO.
_base_ = './mask-rcnn_dilateformer-s_fpn_1x_coco.py'
