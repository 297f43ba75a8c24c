"""Which registered component each of ``GuardedRunner``'s component guards selects.

A config of the project inherits ``configs/_base_/guards.py`` (``runner_type =
'GuardedRunner'`` and the ``guards`` dict) and otherwise names the frameworks' own components.
When the runner is built, each guard that is on puts the guarded form in place of the plain
one it finds in the config (the config it saves says so):

=================  ==============================  ======================================
guard              config key                      plain -> guarded
=================  ==============================  ======================================
resume_position    ``train_cfg``                   ``EpochBasedTrainLoop`` ->
                                                   ``GuardedEpochBasedTrainLoop`` (and Iter)
finite_steps       ``optim_wrapper``               ``OptimWrapper`` -> ``FiniteOptimWrapper``
                                                   (and ``AmpOptimWrapper``)
safe_checkpoints   ``default_hooks.checkpoint``    ``CheckpointHook`` -> ``SafeCheckpointHook``
checked_coco       ``{train,val,test}_dataloader   ``CocoDataset`` -> ``CheckedCocoDataset``
                   .dataset``                      (inside dataset wrappers too)
=================  ==============================  ======================================

``guards = dict(finite_steps=False)`` keeps the plain component; a type the table does not know
(a user's own loop, say) is left as it is.
"""
from typing import Dict, Mapping

__all__ = ['COMPONENT_GUARDS', 'select_guarded_components']

COMPONENT_GUARDS: Dict[str, Dict[str, str]] = {
    'resume_position': {'EpochBasedTrainLoop': 'GuardedEpochBasedTrainLoop',
                        'IterBasedTrainLoop': 'GuardedIterBasedTrainLoop'},
    'finite_steps': {'OptimWrapper': 'FiniteOptimWrapper',
                     'AmpOptimWrapper': 'FiniteAmpOptimWrapper'},
    'safe_checkpoints': {'CheckpointHook': 'SafeCheckpointHook'},
    'checked_coco': {'CocoDataset': 'CheckedCocoDataset'},
}


def _upgrade(node, table: Mapping[str, str]) -> None:
    """Replace ``node['type']`` by its guarded form (a scope prefix is kept)."""
    if not isinstance(node, Mapping) or not isinstance(node.get('type'), str):
        return
    scope, _, name = node['type'].rpartition('.')
    if name in table:
        node['type'] = f'{scope}.{table[name]}' if scope else table[name]


def _datasets(node):
    """The dataset configs of ``node``, through wrappers (RepeatDataset, ConcatDataset, ...)."""
    if isinstance(node, Mapping):
        yield node
        yield from _datasets(node.get('dataset'))
        for child in node.get('datasets') or ():
            yield from _datasets(child)


def select_guarded_components(cfg, guards: Mapping[str, bool]) -> None:
    """Put the guarded components in ``cfg`` (in place) for the guards that are on."""
    train_cfg = cfg.get('train_cfg')
    if guards['resume_position'] and isinstance(train_cfg, Mapping):
        if 'type' not in train_cfg and 'by_epoch' in train_cfg:  # mmengine's short form
            by_epoch = train_cfg.pop('by_epoch')
            train_cfg['type'] = 'EpochBasedTrainLoop' if by_epoch else 'IterBasedTrainLoop'
        _upgrade(train_cfg, COMPONENT_GUARDS['resume_position'])
    if guards['finite_steps']:
        optim_wrapper = cfg.get('optim_wrapper')
        if isinstance(optim_wrapper, Mapping) and 'type' not in optim_wrapper:
            optim_wrapper['type'] = 'OptimWrapper'  # mmengine's default
        _upgrade(optim_wrapper, COMPONENT_GUARDS['finite_steps'])
    if guards['safe_checkpoints']:
        _upgrade((cfg.get('default_hooks') or {}).get('checkpoint'),
                 COMPONENT_GUARDS['safe_checkpoints'])
    if guards['checked_coco']:
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            for dataset in _datasets((cfg.get(loader) or {}).get('dataset')):
                _upgrade(dataset, COMPONENT_GUARDS['checked_coco'])
