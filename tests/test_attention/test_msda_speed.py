"""The MSDA speed/memory claim of the README, measured with the benchmark tool's protocol.

Opt-in (`bash tools/run_tests.sh -m slow`): it takes about a minute and timing needs a quiet machine.
"""
import pytest

from mmvit_ext.analysis.benchmark import run_case_in_subprocess


@pytest.mark.slow
def test_fast_msda_is_5x_faster_forward_3x_forward_backward_and_leaner_at_800x1344():
    for mode, min_speedup in (('fwd', 5.0), ('fwdbwd', 3.0)):
        res = {}
        for op in ('msda_reference', 'msda'):
            res[op] = run_case_in_subprocess('mmvit_ext.analysis.bench_cases', dict(
                kind='attention', op=op, mode=mode, size=[200, 336], channels=72, heads=3,
                batch=1, device='cpu', threads=1, repeat=3))
        ref, fast = res['msda_reference'], res['msda']
        assert ref['time_ms'] / fast['time_ms'] >= min_speedup, (mode, ref, fast)
        assert fast['peak_mb'] < ref['peak_mb'], (mode, ref, fast)
