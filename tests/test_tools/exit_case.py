"""A benchmark 'case module' whose case ends its process without a word (as an out-of-memory
kill does), for tests of the case runner."""
import os


def run_child(case):
    os._exit(case['code'])
