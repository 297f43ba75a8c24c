"""One class per task of an exported model (see :mod:`.base`), found by the name a file's
metadata gives (``kind``) or by the framework a config belongs to."""
from .backbone import TASK as BACKBONE
from .base import Task
from .classifier import TASK as CLASSIFIER
from .detector import TASK as DETECTOR
from .segmentor import TASK as SEGMENTOR

__all__ = ['Task', 'TASKS', 'task_named', 'task_for_scope']

TASKS = {task.name: task for task in (DETECTOR, SEGMENTOR, CLASSIFIER, BACKBONE)}


def task_named(name: str) -> Task:
    return TASKS[name]


def task_for_scope(scope: str, whole: bool = True) -> Task:
    """The task of a config's model: by its framework, or the backbone alone (``whole=False``;
    mmpretrain's classifiers are exported whole, their backbone is the model)."""
    if not whole and scope != 'mmpretrain':
        return BACKBONE
    for task in (DETECTOR, SEGMENTOR, CLASSIFIER):
        if task.scope == scope:
            return task
    raise ValueError(f'no export task for {scope!r} configs; the tasks cover '
                     f'{sorted(t.scope for t in TASKS.values() if t.scope)}')
