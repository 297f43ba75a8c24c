# Short entry point: Cascade Mask R-CNN 3x (multi-scale crop) with QnA-ViT-T on COCO.
_base_ = './cascade-mask-rcnn_qnavit-t_fpn_4conv1fc-giou_ms-crop-3x_coco.py'
