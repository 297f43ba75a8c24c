# Short entry point: Mask R-CNN 1x with QnA-ViT-T on COCO.
_base_ = './mask-rcnn_qnavit-t_fpn_1x_coco.py'
