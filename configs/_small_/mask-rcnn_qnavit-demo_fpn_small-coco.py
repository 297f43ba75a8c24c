# Demo: Mask R-CNN with a small QnA-ViT on the built-in COCO-format small dataset, on CPU.
#   python tools/misc/make_small_datasets.py data/small
#   python tools/train.py configs/_small_/mask-rcnn_qnavit-demo_fpn_small-coco.py
# The same detector settings as the DilateFormer demo (data, schedule, shrunk heads) with the
# QnA-ViT code: narrow widths, one QnA block + the stride-2 QnA block in stages 1-3, one MSA
# block in stages 3-4 (stage 4 global, as in the COCO configs), from random weights. The 160x128
# images give a 10x8 stage-3 map: its 14x14 window pads and masks.
_base_ = './mask-rcnn_dilateformer-demo_fpn_small-coco.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='QnAViT',
        arch=dict(embed_dims=32, qna_depths=(1, 1, 1, 0), msa_depths=(0, 0, 1, 1),
                  qna_heads=(4, 8, 16), msa_heads=(0, 0, 4, 8), kernel_size=3),
        msa_modes=('window', 'window', 'window', 'global'),
        drop_path_rate=0.,
        init_cfg=None),
    neck=dict(in_channels=[32, 64, 128, 256]))
