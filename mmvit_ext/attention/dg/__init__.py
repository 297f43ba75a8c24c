"""Dynamic group attention (DG-Attention; DGT, Liu et al., IJCAI 2022, arXiv 2203.03937).

Only the paper's description is public (no code, no architecture table), so the details are
this project's design, chosen to follow that description:

1. **Groups.** Per image and per head, the queries are clustered with spherical k-means (cosine
   similarity of L2-normalised queries) for a fixed number of iterations. Initial centroids are
   the queries at evenly spaced token positions, so the clustering is deterministic and
   evaluation repeatable. Empty clusters keep their centroid. No gradient flows through it.
2. **Keys per group.** Each group scores every key with the mean of its (raw, unnormalised)
   queries, i.e. by the group's mean attention logit, and keeps the top-k keys. Also no gradient.
3. **Attention.** Every query attends, with an ordinary softmax, to its group's k keys/values.
   Gradients flow through q, k and v as in any attention.

``num_groups`` and ``topk`` are capped at the token count, so any number of tokens works; with one
group and ``topk >= N`` the module is ordinary multi-head attention.

Mixed precision: routing is a discrete decision, so it is always taken in fp32 with autocast off.
Under autocast the module computes the queries and keys it routes with in fp32 too (a no-grad
fp32 projection), so AMP and fp32 pick the same groups and keys for the same input; only the
attention itself runs in half precision.

One file per piece: :mod:`.module`, :mod:`.routing`, :mod:`.grouped` (fast and traceable forms),
:mod:`.lean`, :mod:`.reference`.
"""
from . import lean, reference  # noqa: F401  (register the forms)
from .grouped import auto_chunk_size, grouped_attention
from .module import DynamicGroupAttention
from .routing import DGRouting, kmeans_groups, route, select_group_keys

__all__ = ['DynamicGroupAttention', 'DGRouting', 'kmeans_groups', 'select_group_keys', 'route',
           'grouped_attention', 'auto_chunk_size']
