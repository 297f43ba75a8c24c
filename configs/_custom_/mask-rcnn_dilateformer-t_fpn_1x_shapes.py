# Fine-tune DilateFormer-T Mask R-CNN on your own COCO-format dataset: the example of
# docs/en/user_guides/custom_dataset.md. Copy it, then change the marked lines for your data.
_base_ = '../dilateformer/mask-rcnn_dilateformer-t_fpn_1x_coco.py'

# 1. where the dataset is: annotations/instances_{train,val}.json and the image folders
data_root = 'data/shapes/small_coco/'

# 2. the class names, spelled and ordered as the annotation file's categories (the dataset
#    refuses a config whose names differ from the file's, instead of shifting the labels)
classes = ('square', 'circle', 'triangle')
metainfo = dict(classes=classes, palette=[(220, 40, 40), (40, 200, 60), (50, 70, 230)])

# 3. the number of classes, in both heads that predict a class
model = dict(
    # ImageNet weights of the backbone (converted official file); to start from a whole
    # trained detector instead, set `load_from` below and `init_cfg=None` here
    backbone=dict(init_cfg=dict(type='Pretrained',
                                checkpoint='checkpoints/dilateformer-tiny_in1k.pth')),
    roi_head=dict(
        bbox_head=dict(num_classes=len(classes)),
        mask_head=dict(num_classes=len(classes))))
# load_from = 'work_dirs/some_coco_run/epoch_12.pth'  # a whole detector: heads of another
#                                                     # num_classes are skipped and logged

# 4. the image size: these images are 160x128, so train and test there (COCO uses 1333x800)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(160, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]

# 5. the data paths, with the class names on every split
train_dataloader = dict(
    batch_size=4, num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4, num_workers=2,
    dataset=dict(data_root=data_root, metainfo=metainfo,
                 ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# the recipe's learning rate is for 16 images a step; scale it to the batch you train with
auto_scale_lr = dict(enable=True, base_batch_size=16)
