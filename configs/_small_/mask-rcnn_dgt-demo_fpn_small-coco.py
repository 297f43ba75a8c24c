# Demo: Mask R-CNN with a small DGT-style backbone on the built-in COCO-format small dataset, CPU.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/mask-rcnn_dgt-demo_fpn_small-coco.py
# The same detector settings as the DilateFormer demo (data, schedule, shrunk heads) with the DGT
# code: narrow widths, one block per stage, from random weights. DGT-style: the hyper-parameters
# are this project's choice. The 160x128 images give 40x32 = 1280 stride-4 tokens, clustered into
# 8 groups of queries that each attend to 64 keys.
_base_ = './mask-rcnn_dilateformer-demo_fpn_small-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='DGT',
        arch=dict(embed_dims=(32, 64, 128, 256), depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                  num_groups=(8, 4, 2, 1), topk=(64, 48, 32, None), stem_channels=16),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256]))
