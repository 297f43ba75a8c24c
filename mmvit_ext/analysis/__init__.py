from .complexity import (ATTENTION_FLOP_HANDLES, DEFAULT_SHAPES, config_complexity, count_flops,
                         count_params)

__all__ = ['ATTENTION_FLOP_HANDLES', 'DEFAULT_SHAPES', 'config_complexity', 'count_flops',
           'count_params']
