"""mmengine's checkpoint loader schemes, unpickling through :func:`.safe_load.safe_torch_load`.

:func:`install` (run by ``import mmvit_ext``) is the one process-wide change the package makes, and
it changes only how checkpoints are unpickled, for every model alike:

* the local loader is registered with mmengine's ``CheckpointLoader.register_scheme``: it
  behaves like mmengine's (same lookup, same ``FileNotFoundError``) but unpickles through the
  allow-list, refuses an unsafe or damaged file in one line (torch's own ``weights_only`` loader
  ends in a traceback that advises ``weights_only=False``), and reads protocol-4 pickles;
* torch >= 2.6: the extra types of :mod:`.allow_list` are also added to torch's own allow-list
  (``torch.serialization.add_safe_globals``), for code that calls ``torch.load`` directly;
* the URL schemes (``https://``, ``torchvision://``, ``open-mmlab://``, ``mmcls://``),
  which mmengine reads through ``torch.hub.load_state_dict_from_url`` (full unpickling), are
  registered the same way: same download, cache (``torch.hub.get_dir()/checkpoints``) and
  rank-0-first order as mmengine, safe unpickling.

What these loaders read is also passed to the checks registered with
:func:`register_load_check` (``mmvit_ext.models`` registers one: a checkpoint that holds one of
our backbones must be finite everywhere, neck and heads included), so the frameworks' own entry
points (``init_detector``, ``init_model``, the inferencers, ``get_model(pretrained=...)``) refuse
what ``tools/test.py`` refuses; a checkpoint of any other model is returned as it is.
"""
import logging
import os
import os.path as osp
from typing import Any, Callable, List
from urllib.parse import urlparse

import torch

from ..errors import Refusal
from ..utils.torch_features import torch_version
from .allow_list import extra_safe_globals
from .safe_load import safe_torch_load

__all__ = ['install', 'TORCH_HAS_ALLOW_LIST', 'CheckpointDownloadError', 'load_from_local',
           'load_from_http', 'register_load_check']

# ``add_safe_globals`` with ``(obj, 'module.name')`` pairs (needed for the restricted getattr)
# and the weights_only default are both torch 2.6.
TORCH_HAS_ALLOW_LIST = torch_version() >= (2, 6)


_LOAD_CHECKS: List[Callable[[Any, str], None]] = []


def register_load_check(check: Callable[[Any, str], None]) -> Callable:
    """Run ``check(checkpoint, filename)`` on every checkpoint the loaders below return (it
    raises to refuse one)."""
    if check not in _LOAD_CHECKS:
        _LOAD_CHECKS.append(check)
    return check


def _checked(checkpoint, filename: str):
    for check in _LOAD_CHECKS:
        check(checkpoint, filename)
    return checkpoint


class CheckpointDownloadError(Refusal, OSError):
    """A checkpoint URL that could not be fetched."""


def load_from_local(filename: str, map_location=None):
    """mmengine's ``load_from_local``, unpickling safely."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return _checked(safe_torch_load(filename, map_location=map_location), filename)


def _download_to_hub_cache(url: str, model_dir=None, progress=False) -> str:
    """Where ``torch.hub.load_state_dict_from_url`` keeps ``url``: downloaded once."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        try:
            torch.hub.download_url_to_file(url, cached, None, progress=progress)
        except (OSError, ValueError) as error:  # URLError, HTTPError, a refused connection
            reason = getattr(error, 'reason', None) or getattr(error, 'strerror', None) or error
            raise CheckpointDownloadError(
                f'could not download the checkpoint {url}: {reason}. Check the address and the '
                'network, or download the file yourself and give its local path') from None
    return cached


def load_from_http(filename: str, map_location=None, model_dir=None, progress=False):
    """mmengine's ``load_from_http`` (local rank 0 downloads first), unpickling safely."""
    from mmengine.dist import get_dist_info
    rank, world_size = get_dist_info()
    checkpoint = None
    if rank == 0:
        checkpoint = safe_torch_load(_download_to_hub_cache(filename, model_dir, progress),
                                     map_location=map_location)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = safe_torch_load(_download_to_hub_cache(filename, model_dir, progress),
                                         map_location=map_location)
    return _checked(checkpoint, filename)


def load_from_torchvision(filename: str, map_location=None):
    """``torchvision://NAME`` (and the deprecated ``modelzoo://``), as mmengine resolves it."""
    from mmengine.runner.checkpoint import get_torchvision_models
    name = filename.split('://', 1)[1]
    return load_from_http(get_torchvision_models()[name], map_location=map_location)


def load_from_openmmlab(filename: str, map_location=None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``, as mmengine resolves it."""
    from mmengine.logging import print_log
    from mmengine.runner.checkpoint import (_get_mmengine_home, get_deprecated_model_names,
                                            get_external_models)
    scheme, name = filename.split('://', 1)
    deprecated = get_deprecated_model_names()
    if name in deprecated:
        print_log(f'{scheme}://{name} is deprecated in favor of {scheme}://{deprecated[name]}',
                  logger='current', level=logging.WARNING)
        name = deprecated[name]
    url = get_external_models()[name]
    if url.startswith(('http://', 'https://')):
        return load_from_http(url, map_location=map_location)
    return load_from_local(osp.join(_get_mmengine_home(), url), map_location=map_location)


def load_from_mmcls(filename: str, map_location=None):
    """``mmcls://NAME``, as mmengine resolves it."""
    from mmengine.runner.checkpoint import _process_mmcls_checkpoint, get_mmcls_models
    checkpoint = load_from_http(get_mmcls_models()[filename[8:]], map_location=map_location)
    return _process_mmcls_checkpoint(checkpoint)


_installed = False


def install() -> None:
    """Make every checkpoint mmengine loads unpickle safely (idempotent; see the module doc)."""
    global _installed
    if _installed:
        return
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # mmengine missing: only torch's allow-list
        CheckpointLoader = None
    if TORCH_HAS_ALLOW_LIST:
        torch.serialization.add_safe_globals(
            [obj if f'{getattr(obj, "__module__", "")}.{getattr(obj, "__qualname__", "")}' == name
             else (obj, name) for name, obj in extra_safe_globals().items()])
    if CheckpointLoader is not None:
        CheckpointLoader.register_scheme('', load_from_local, force=True)
        for prefixes, loader in ((('http://', 'https://'), load_from_http),
                                 (('modelzoo://', 'torchvision://'), load_from_torchvision),
                                 (('open-mmlab://', 'openmmlab://'), load_from_openmmlab),
                                 ('mmcls://', load_from_mmcls)):
            CheckpointLoader.register_scheme(prefixes, loader, force=True)
    _installed = True
