"""One rank of the frozen-stages DDP check (run by test_frozen_stages_ddp.py, 2 gloo processes).

Built the way mmengine's Runner builds a run: the model is wrapped in DDP
(``find_unused_parameters=False``, ``broadcast_buffers=False``, as ``MMDistributedDataParallel``
gets them) before ``model.train()`` is first called; then a few AdamW steps with weight decay.
"""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn as nn

SMALL_ARCHS = {
    'DilateFormer': dict(embed_dims=24, depths=(1, 1, 1, 1), num_heads=(3, 3, 6, 6)),
    'SGFormer': dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(2, 2, 4, 8)),
    'QnAViT': dict(embed_dims=16, qna_depths=(1, 1, 1, 0), msa_depths=(0, 0, 1, 1),
                   qna_heads=(2, 2, 4), msa_heads=(0, 0, 2, 4), kernel_size=3),
    'DGT': dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                num_groups=(4, 2, 2, 1), topk=(32, 16, 8, None), stem_channels=8),
}


class Classifier(nn.Module):
    """The backbone's four outputs, pooled, into one linear head."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(sum(backbone.embed_dims), 3)

    def forward(self, images, labels):
        pooled = torch.cat([f.mean((2, 3)) for f in self.backbone(images)], 1)
        return nn.functional.cross_entropy(self.head(pooled), labels)


def frozen_state(backbone):
    """Parameters and buffers of what ``frozen_stages`` freezes, by name."""
    frozen = backbone.frozen_modules(backbone.frozen_stages) + [
        getattr(backbone, f'norm{i}') for i in range(backbone.frozen_stages)
        if i in backbone.out_indices]
    ids = {id(t) for m in frozen for t in list(m.parameters()) + list(m.buffers())}
    return {k: v.detach().clone() for k, v in backbone.state_dict(keep_vars=True).items()
            if id(v) in ids}


def main(rank: int, world: int, port: int, family: str, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=world)
    torch.set_num_threads(1)
    from mmvit_ext.models import backbones
    cls = getattr(backbones, family)
    torch.manual_seed(0)  # the same initial weights on both ranks (DDP also broadcasts them)
    extra = dict(norm_eval=True)
    backbone = cls(arch=SMALL_ARCHS[family], frozen_stages=1, drop_path_rate=0., **extra)
    model = Classifier(backbone)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=False,
                                              broadcast_buffers=False)
    ddp.train()
    before = frozen_state(backbone)
    bn_stats = {k: v.clone() for k, v in backbone.state_dict().items()
                if k.endswith(('running_mean', 'running_var'))}
    trainable = {k: v.detach().clone() for k, v in backbone.named_parameters()
                 if v.requires_grad}
    optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-2, weight_decay=0.05)
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own batches
    for _ in range(3):
        images = torch.randn(2, 3, 64, 64, generator=gen)
        labels = torch.randint(0, 3, (2, ), generator=gen)
        ddp(images, labels).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = frozen_state(backbone)
    moved = [k for k, v in backbone.named_parameters() if k in trainable
             and not torch.equal(v, trainable[k])]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    result = dict(
        frozen=len(before),
        frozen_changed=[k for k in before if not torch.equal(before[k], after[k])],
        frozen_requiring_grad=[k for k, v in backbone.named_parameters()
                               if k in before and v.requires_grad],
        trainable_moved=len(moved), trainable=len(trainable),
        bn_stats_changed=[k for k, v in backbone.state_dict().items()
                          if k in bn_stats and not torch.equal(v, bn_stats[k])],
        ranks_equal=all(torch.equal(gathered[0], g) for g in gathered))
    with open(os.path.join(out, f'{family}_rank{rank}.json'), 'w') as f:
        json.dump(result, f)
    dist.destroy_process_group()


if __name__ == '__main__':
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
