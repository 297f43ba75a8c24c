"""What the frameworks' data preprocessors do at test time, inside the exported graph."""
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['Preprocess']


class Preprocess(nn.Module):
    """A data preprocessor's test-time steps: channel flip, mean / std, bottom-right padding to
    the size divisor with the pad value (mmengine's ``ImgDataPreProcessor`` order)."""

    def __init__(self, pre: nn.Module):
        super().__init__()
        flip = any(bool(getattr(pre, name, False))
                   for name in ('_channel_conversion', 'channel_conversion', 'to_rgb'))
        normalise = getattr(pre, '_enable_normalize', False)
        self.flip = flip
        self.register_buffer('mean', pre.mean.detach().clone().reshape(1, -1, 1, 1) if normalise
                             else torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', pre.std.detach().clone().reshape(1, -1, 1, 1) if normalise
                             else torch.ones(1, 3, 1, 1), persistent=False)
        divisor = getattr(pre, 'pad_size_divisor', 1)
        test_cfg = getattr(pre, 'test_cfg', None) or {}  # mmseg: padding at test time only here
        if test_cfg.get('size') is not None:
            raise NotImplementedError(f'export pads to a size divisor, not to a fixed size '
                                      f'(data_preprocessor.test_cfg.size={test_cfg["size"]})')
        self.divisor = int(test_cfg.get('size_divisor') or divisor or 1)
        self.pad_value = float(getattr(pre, 'pad_value', getattr(pre, 'pad_val', 0)))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels[:, [2, 1, 0]] if self.flip else pixels
        x = (x.float() - self.mean) / self.std
        if self.divisor > 1:
            h, w = x.shape[-2:]
            d = self.divisor
            x = F.pad(x, (0, (d - w % d) % d, 0, (d - h % d) % d), value=self.pad_value)
        return x
