# Demo: Cascade Mask R-CNN with a small DilateFormer on the built-in small COCO-format dataset,
# on CPU (the export tests train it for a few epochs to check the end-to-end export with
# trained weights).
#   python tools/train.py configs/_small_/cascade-mask-rcnn_dilateformer-demo_fpn_small-coco.py
# The Mask R-CNN demo (backbone, neck, RPN, data, schedule) with the cascade heads of
# configs/dilateformer/cascade-mask-rcnn_*.py (three 4conv1fc stages with GIoU, mmdet's
# ConvNeXt recipe), narrowed like the demo; BN instead of SyncBN so that it trains in one
# CPU process.
_base_ = './mask-rcnn_dilateformer-demo_fpn_small-coco.py'

neck_channels = 64
num_classes = 3
stage_stds = [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
model = dict(
    roi_head=dict(
        _delete_=True,
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=neck_channels, featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(type='ConvFCBBoxHead', num_shared_convs=4, num_shared_fcs=1,
                 in_channels=neck_channels, conv_out_channels=neck_channels,
                 fc_out_channels=256, roi_feat_size=7, num_classes=num_classes,
                 bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                                 target_stds=stds),
                 reg_class_agnostic=False, reg_decoded_bbox=True,
                 norm_cfg=dict(type='BN', requires_grad=True),
                 loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                 loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for stds in stage_stds],
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=neck_channels, featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(type='FCNMaskHead', num_convs=4, in_channels=neck_channels,
                       conv_out_channels=neck_channels, num_classes=num_classes,
                       loss_mask=dict(type='CrossEntropyLoss', use_mask=True,
                                      loss_weight=1.0))),
    train_cfg=dict(
        _delete_=True,
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, match_low_quality=True, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=128, pos_fraction=0.5, neg_pos_ub=-1,
                         add_gt_as_proposals=False),
            allowed_border=0, pos_weight=-1, debug=False),
        rpn_proposal=dict(nms_pre=600, max_per_img=300, nms=dict(type='nms', iou_threshold=0.7),
                          min_bbox_size=0),
        rcnn=[dict(assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                                 min_pos_iou=iou, match_low_quality=False, ignore_iof_thr=-1),
                   sampler=dict(type='RandomSampler', num=128, pos_fraction=0.25,
                                neg_pos_ub=-1, add_gt_as_proposals=True),
                   mask_size=28, pos_weight=-1, debug=False)
              for iou in (0.5, 0.6, 0.7)]),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=300)))
