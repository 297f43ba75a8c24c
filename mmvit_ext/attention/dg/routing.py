"""DG-Attention's routing: which group each query is in (spherical k-means of the queries) and
which keys each group attends to (top-k by the group's mean query). No gradient flows through
it, and it always runs in fp32 with autocast off: a discrete decision must not depend on the
precision mode.

Forms of ``dg.routing``: ``fast`` (group sums over blocks of tokens, sized by N) and
``traceable`` (one product, no test of N); both decide the same way.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from ..forms import dispatch, register
from ..shapes import one_hot

__all__ = ['DGRouting', 'kmeans_groups', 'select_group_keys', 'group_count', 'route',
           'routing_precision']


class DGRouting(NamedTuple):
    """Which group each query is in, and which keys each group attends to."""
    assign: torch.Tensor  # (BH, N) long, group id of every query
    key_index: torch.Tensor  # (BH, G, k) long, the keys of every group


def _group_sums(x: torch.Tensor, assign: torch.Tensor, groups: int, static: bool = False,
                block: int = 1024):
    """Per-group sums of ``x`` (BH, N, d) and member counts (BH, G).

    One-hot matmuls, deterministic on every device (a scatter-add is several times slower on
    CPU, and its atomics make CUDA sums order-dependent). The token axis is cut into blocks of
    ``block`` that form the batch of the product: a single ``(G x N) @ (N x d)`` per image-head
    has a tiny output and one long reduction, which a GPU runs on a handful of thread blocks.
    ``static``: one product, with no test of N (the traceable form).
    """
    BH, N, d = x.shape
    onehot = one_hot(assign, groups).to(x.dtype)  # (BH, N, G)
    counts = onehot.sum(1)
    nb = N // block
    if static or nb < 2:
        return onehot.transpose(1, 2) @ x, counts
    full = nb * block  # whole blocks as the batch, the remainder as one more product
    sums = (onehot[:, :full].reshape(BH * nb, block, groups).transpose(1, 2)
            @ x[:, :full].reshape(BH * nb, block, d)).reshape(BH, nb, groups, d).sum(1)
    if full < N:
        sums = sums + onehot[:, full:].transpose(1, 2) @ x[:, full:]
    return sums, counts


def routing_precision(device_type: str):
    """fp32, autocast off: routing decisions must not depend on the precision mode."""
    return torch.autocast(device_type=device_type, enabled=False)


def group_count(num_groups: int, num_tokens) -> int:
    """``min(num_groups, N)``; under torch.export (N symbolic) ``num_groups`` itself, checked at
    run time: the k-means start divides by G - 1, and the ONNX exporter takes no symbolic
    divisor. Every size an exported program accepts (>= 240) has N >= G in every stage."""
    if isinstance(num_tokens, torch.SymInt):
        torch._check(num_tokens >= num_groups)
        return num_groups
    return min(num_groups, num_tokens)


@torch.no_grad()
def kmeans_groups(q: torch.Tensor, num_groups: int, iters: int = 3,
                  static: bool = False) -> torch.Tensor:
    """Spherical k-means of the queries ``(BH, N, d)`` into ``min(num_groups, N)`` groups.

    Deterministic: centroids start at the queries of evenly spaced tokens. Returns ``(BH, N)``
    group ids. Memory ``O(N * G)``.
    """
    BH, N, d = q.shape
    groups = group_count(num_groups, N)
    with routing_precision(q.device.type):
        qn = F.normalize(q.float(), dim=-1)
        # evenly spaced tokens: i (N - 1) / (G - 1) rounded half to even, as torch.round does,
        # computed in integers (exporters lack linspace)
        span = max(groups - 1, 1)
        steps = torch.arange(groups, device=q.device) * (N - 1)
        quot, rem = steps // span, steps % span
        start = quot + ((2 * rem > span) | ((2 * rem == span) & (quot % 2 == 1))).long()
        centroids = qn[:, start]  # (BH, G, d)
        assign = (qn @ centroids.transpose(1, 2)).argmax(-1)
        for _ in range(iters):
            sums, counts = _group_sums(qn, assign, groups, static)
            centroids = torch.where(counts[..., None] > 0, F.normalize(sums, dim=-1), centroids)
            assign = (qn @ centroids.transpose(1, 2)).argmax(-1)
    return assign


@torch.no_grad()
def select_group_keys(q: torch.Tensor, k: torch.Tensor, assign: torch.Tensor, groups: int,
                      topk: int, static: bool = False) -> torch.Tensor:
    """Top-``min(topk, N)`` keys of every group by the group's mean query . key.

    ``q``, ``k``: ``(BH, N, d)``; returns ``(BH, G, k)`` key indices. An empty group gets some
    keys too (it has no query, so they are never used).
    """
    with routing_precision(q.device.type):
        sums, counts = _group_sums(q.float(), assign, groups, static)
        mean_q = sums / counts.clamp(min=1)[..., None]
        scores = mean_q @ k.float().transpose(1, 2)  # (BH, G, N)
        return scores.topk(min(topk, k.shape[1]), dim=-1).indices


def route(q: torch.Tensor, k: torch.Tensor, num_groups: int, topk: Optional[int],
          kmeans_iters: int) -> DGRouting:
    """Groups (k-means of the queries) and their keys (top-k; None = all), in the chosen
    form."""
    return dispatch('dg.routing', q, k, num_groups, topk, kmeans_iters)


def _route(q, k, num_groups, topk, kmeans_iters, static):
    N = q.shape[1]
    groups = group_count(num_groups, N)
    if groups == 1:  # nothing to cluster
        assign = torch.zeros(q.shape[:2], dtype=torch.long, device=q.device)
    else:
        assign = kmeans_groups(q, groups, kmeans_iters, static)
    kk = N if topk is None else min(topk, N)
    if groups == 1 and kk == N:
        key_index = torch.arange(N, device=q.device).expand(q.shape[0], 1, N)
    else:
        key_index = select_group_keys(q, k, assign, groups, kk, static)
    return DGRouting(assign, key_index)


@register('dg.routing', 'fast')
def route_fast(q, k, num_groups, topk, kmeans_iters):
    return _route(q, k, num_groups, topk, kmeans_iters, static=False)


@register('dg.routing', 'traceable')
def route_traceable(q, k, num_groups, topk, kmeans_iters):
    return _route(q, k, num_groups, topk, kmeans_iters, static=True)
