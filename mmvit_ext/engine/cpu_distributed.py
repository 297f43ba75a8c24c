"""Distributed training on CPU-only machines (gloo), for tests and laptops.

mmengine's pytorch launcher calls ``torch.cuda.set_device`` (absent on CPU builds), defaults to
NCCL and wraps the model with ``device_ids``. :func:`setup_cpu_distributed` creates the gloo process
group itself (the Runner then skips its own init) and adapts the config. On a machine with CUDA it
does nothing.
"""
import os

import torch

__all__ = ['setup_cpu_distributed', 'replace_syncbn']


def replace_syncbn(node):
    """Turn every ``SyncBN`` norm config into ``BN`` (SyncBN needs GPU modules)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            replace_syncbn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replace_syncbn(value)
    return node


def setup_cpu_distributed(cfg, launcher: str) -> bool:
    """Prepare a CPU run started by ``torch.distributed`` (``--launcher pytorch``).

    Returns True when it set things up.
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    import torch.distributed as dist
    missing = [k for k in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
               if k not in os.environ]
    if missing:
        raise RuntimeError(f'--launcher pytorch needs the environment variables {missing}; '
                           'start the script with tools/dist_train.sh or torchrun')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.setdefault('env_cfg', {})
    cfg.env_cfg['dist_cfg'] = dict(backend='gloo')
    cfg.model_wrapper_cfg = dict(
        type='MMDistributedDataParallel', device_ids=None,
        broadcast_buffers=False, find_unused_parameters=False)
    replace_syncbn(cfg.model)
    return True
