"""Packaging for mmvit_ext.

Like mmdet/mmseg/mmpretrain, a wheel or sdist ships ``configs/``, ``tools/`` and ``model-index.yml``
inside the package as ``mmvit_ext/.mim/`` so that ``mim train mmvit_ext <config name>`` finds them.
mim resolves the package through its installed location, so use a regular install
(``pip install .``); a PEP 660 editable install has no ``site-packages/mmvit_ext`` and mim cannot
find the tools (configs by path still work with ``mim train mmdet path/to/config.py``).
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_requirements(name):
    with open(osp.join(ROOT, 'requirements', name)) as f:
        return [line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()]


def add_mim_extension():
    """Copy (wheel/sdist) or symlink (develop) configs/tools into mmvit_ext/.mim."""
    if 'develop' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install', 'build')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'mmvit_ext', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:  # e.g. filesystems without symlinks: fall back to a copy
                pass
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'mmvit_ext', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmvit_ext',
        version=get_version(),
        description='DilateFormer, SG-Former, QnA-ViT and DGT backbones for '
        'mmdetection, mmsegmentation and mmpretrain',
        long_description=open(osp.join(ROOT, 'README.md')).read(),
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        python_requires='>=3.8',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'tests.*')),
        include_package_data=True,
        install_requires=read_requirements('runtime.txt'),
        extras_require={
            'mim': read_requirements('mminstall.txt'),
            'tests': read_requirements('tests.txt'),
            'optional': read_requirements('optional.txt'),
            'all': read_requirements('mminstall.txt') + read_requirements('optional.txt')
            + read_requirements('tests.txt'),
        },
        zip_safe=False)
