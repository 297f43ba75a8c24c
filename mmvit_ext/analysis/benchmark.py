"""Time and peak-memory measurement, one fresh process per case.

Protocol (see the project's performance notes): each case runs in its own process (forked from a
server that has only imported the modules) so that allocator caches of one case do not hide
another's memory. The first call measures peak memory,
then ``warmup`` untimed and ``repeat`` timed calls follow; the best and the median wall time are
reported.

* CPU: peak memory = growth of ``ru_maxrss`` over the first call (an upper bound that includes
  allocator caching); threads fixed by ``threads``.
* CUDA: ``torch.cuda.max_memory_allocated`` growth over the first call; timing with
  ``torch.cuda.synchronize``.
"""
import resource
import time
from typing import Callable, Dict, List

import torch

__all__ = ['measure', 'run_case_in_subprocess', 'format_table', 'saved_activation_bytes',
           'cpu_name', 'allocator_setting']


def cpu_name() -> str:
    """The CPU's model name, for the setting line of a benchmark table."""
    import platform
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def allocator_setting() -> str:
    """The CPU allocator's settings from the environment (glibc's ``MALLOC_*`` variables, a
    preloaded allocator), for the setting line: on our CPU they changed a backbone's eager
    forward time by up to a fifth (docs/en/benchmarks.md, "The CPU allocator")."""
    import os
    named = sorted(f'{k}={v}' for k, v in os.environ.items()
                   if k.startswith('MALLOC_') or k == 'LD_PRELOAD')
    return ', '.join(named) if named else 'default malloc settings'


def _rss_peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def measure(fn: Callable[[], object], device: str = 'cpu', warmup: int = 1,
            repeat: int = 5) -> Dict[str, float]:
    """Run ``fn`` (which should do all work incl. backward) and return time_ms / peak_mb."""
    cuda = device.startswith('cuda')
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_peak_bytes()
    t0 = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    first_ms = (time.perf_counter() - t0) * 1e3
    peak = (torch.cuda.max_memory_allocated() if cuda else _rss_peak_bytes()) - before
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return dict(time_ms=min(times) if times else first_ms, median_ms=sorted(times)[len(times) // 2]
                if times else first_ms, first_ms=first_ms, peak_mb=max(peak, 0) / 2**20)


def saved_activation_bytes(fn: Callable[[], object], exclude=()) -> int:
    """Bytes of the distinct tensors autograd keeps for backward while ``fn`` runs its forward:
    the activation memory of training, measured the same way on every device. Tensors sharing
    storage with ``exclude`` (the parameters) are not counted."""
    storages = {}
    skip = {(t.device.type, t.untyped_storage().data_ptr()) for t in exclude}

    def pack(t):
        storage = t.untyped_storage()
        key = (storage.device.type, storage.data_ptr())
        if key not in skip:
            storages[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def _child(module: str, case: Dict, conn) -> None:
    import importlib
    import traceback
    try:
        conn.send((True, importlib.import_module(module).run_child(case)))
    except BaseException:  # noqa: B902  (anything the case raises goes back as text)
        conn.send((False, traceback.format_exc()))
    finally:
        conn.close()


def run_case_in_subprocess(module: str, case: Dict, timeout: float = 1800) -> Dict:
    """Run ``<module>.run_child(case)`` in a fresh process and return its result dict.

    The processes fork from one forkserver that has imported ``module`` (torch, the frameworks,
    mmvit_ext) but run nothing: each case still starts from a process whose memory, allocator
    caches and thread pools no other case touched, without paying the ~5 s import per case. On
    the CPU the peak is the growth of the case's own ``ru_maxrss`` (see :func:`measure`)."""
    import multiprocessing
    ctx = multiprocessing.get_context('forkserver')
    ctx.set_forkserver_preload([module])  # takes effect when the server starts (first case)
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(module, case, send))
    proc.start()
    send.close()
    try:
        if not receive.poll(timeout):
            proc.kill()
            raise RuntimeError(f'benchmark case {case} did not finish in {timeout:.0f} s')
        ok, result = receive.recv()
    except EOFError:  # the process died without a word: killed (out of memory?) or crashed
        proc.join()
        raise RuntimeError(f'benchmark case {case} failed: its process ended with exit code '
                           f'{proc.exitcode} (killed by the system if negative, e.g. out of '
                           f'memory)') from None
    finally:
        receive.close()
    proc.join()
    if not ok:
        raise RuntimeError(f'benchmark case {case} failed:\n{result[-3000:]}')
    return result


def format_table(rows: List[Dict], columns: List[str]) -> str:
    widths = [max(len(c), *(len(str(r.get(c, ''))) for r in rows)) for c in columns]
    out = [' | '.join(c.ljust(w) for c, w in zip(columns, widths)),
           '-|-'.join('-' * w for w in widths)]
    for r in rows:
        out.append(' | '.join(str(r.get(c, '')).ljust(w) for c, w in zip(columns, widths)))
    return '\n'.join(out)
