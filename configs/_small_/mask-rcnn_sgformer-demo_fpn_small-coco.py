# Demo: Mask R-CNN with a small SG-Former on the built-in COCO-format small dataset, on CPU.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/mask-rcnn_sgformer-demo_fpn_small-coco.py
# The same detector settings as the DilateFormer demo (data, schedule, shrunk heads) with the
# SG-Former code: narrow widths, two blocks (H + G) in stages 1-3, from random weights. The
# 160x128 images give stride-4 maps of 40x32: windows, reductions and merge groups all pad.
_base_ = './mask-rcnn_dilateformer-demo_fpn_small-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SGFormer',
        arch=dict(embed_dims=(32, 64, 128, 256), depths=(2, 2, 2, 1), num_heads=(2, 2, 4, 8)),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256]))
