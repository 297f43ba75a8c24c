from .complexity import ATTENTION_FLOP_HANDLES, count_flops, count_params

__all__ = ['ATTENTION_FLOP_HANDLES', 'count_flops', 'count_params']
