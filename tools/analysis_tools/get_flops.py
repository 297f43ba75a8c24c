"""Parameters and FLOPs (multiply-adds, the papers' "FLOPs") of a config's model at a given shape.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--cfg-options k=v ...]

Default shapes follow the community convention: detection 1280x800 (H=800, W=1280), segmentation
512x2048, classification 224x224. Attention is counted (see mmvit_ext/analysis/complexity.py);
element-wise ops (softmax, GELU, add) are not, as in fvcore. Weights are not loaded.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import mmvit_ext  # noqa: E402,F401
from mmvit_ext.analysis import count_flops  # noqa: E402

DEFAULT_SHAPES = dict(mmdet=(800, 1280), mmseg=(512, 2048), mmpretrain=(224, 224))


class _TensorForward(nn.Module):
    """Wraps a detector/segmentor/classifier so that forward(img) runs its 'tensor' mode."""

    def __init__(self, model, scope, shape):
        super().__init__()
        self.model, self.scope = model, scope
        meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                    scale_factor=(1.0, 1.0))
        if scope == 'mmdet':
            from mmdet.structures import DetDataSample
            self.data_samples = [DetDataSample(metainfo=meta)]
        elif scope == 'mmseg':
            from mmseg.structures import SegDataSample
            self.data_samples = [SegDataSample(metainfo=meta)]
        else:
            self.data_samples = None

    def forward(self, img):
        return self.model(img, self.data_samples, mode='tensor')


def build_model(cfg):
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    if cfg.model.get('backbone', {}).get('init_cfg') is not None:
        cfg.model.backbone.init_cfg = None  # FLOPs do not depend on weights
    model = registry.build(cfg.model)
    from mmengine.model import revert_sync_batchnorm
    return revert_sync_batchnorm(model).eval(), scope


def main():
    parser = argparse.ArgumentParser(description='Count params and FLOPs (MACs)')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] (one value: square)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model, scope = build_model(cfg)
    if args.shape:
        if len(args.shape) not in (1, 2):
            parser.error('--shape takes H or H W')
        shape = tuple(args.shape) * (3 - len(args.shape)) if len(args.shape) == 1 else tuple(args.shape)
    else:
        shape = DEFAULT_SHAPES.get(scope, (224, 224))
    img = torch.randn(1, 3, *shape)
    whole = count_flops(_TensorForward(model, scope, shape), inputs=(img, ))
    backbone = count_flops(model.backbone, inputs=(img, ))
    line = '=' * 60
    print(f'{line}\nconfig: {args.config}\ninput shape: {shape[0]}x{shape[1]} (HxW)\n'
          f'model:    params {whole["params"] / 1e6:.2f} M, FLOPs {whole["flops"] / 1e9:.2f} G\n'
          f'backbone: params {backbone["params"] / 1e6:.2f} M, FLOPs {backbone["flops"] / 1e9:.2f} G\n'
          f'FLOPs are multiply-adds, attention included; not counted: '
          f'{", ".join(sorted(whole["unsupported"])) or "nothing"}\n{line}')


if __name__ == '__main__':
    main()
