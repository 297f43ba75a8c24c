"""Sphinx configuration of the mmvit_ext manual (MyST Markdown pages, API from docstrings).

Build (warnings are errors, every internal link and reference checked):

    python -m sphinx -W --keep-going -b html docs/en docs/en/_build/html

The model zoo page is generated from the configs' metafiles before each build (stat_model_zoo.py), with the
model pages from the configs' READMEs.
"""
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
REPO = os.environ.get('MMVIT_DOCS_REPO') or osp.dirname(osp.dirname(HERE))
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import stat_model_zoo  # noqa: E402

stat_model_zoo.write(osp.join(HERE, '_generated', 'model_zoo_table.md'), REPO)
stat_model_zoo.write_model_pages(HERE, REPO)

project = 'mmvit_ext'
author = 'mmvit_ext contributors'
copyright = '2026, mmvit_ext contributors'
with open(osp.join(REPO, 'mmvit_ext', 'version.py')) as f:  # without importing the package
    version = release = f.read().split("__version__ = ")[1].split()[0].strip("'\"")

extensions = ['myst_parser', 'sphinx.ext.autodoc', 'sphinx.ext.napoleon',
              'sphinx.ext.viewcode']
source_suffix = {'.md': 'markdown', '.rst': 'restructuredtext'}
myst_enable_extensions = ['colon_fence', 'deflist']
myst_heading_anchors = 3
exclude_patterns = ['_build', '_generated/*.md', 'models/_details/*.md']  # included, not pages
templates_path = []

html_theme = 'furo'
html_title = 'mmvit_ext'
html_static_path = ['_static']
html_css_files = ['layout.css']  # tables scroll, code wraps: nothing is cut off

autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'members': True, 'show-inheritance': False}
# Read the Docs installs the docs requirements only (no torch / mmcv build there): the API page is
# then built from the sources with the heavy imports mocked. Locally and in the tests the real
# packages are imported.
if os.environ.get('READTHEDOCS'):
    autodoc_mock_imports = ['torch', 'torchvision', 'mmcv', 'mmengine', 'mmdet', 'mmseg',
                            'mmpretrain', 'numpy', 'cv2', 'onnx', 'onnxruntime', 'onnxscript']
autodoc_inherit_docstrings = False  # torch's and mmengine's docstrings are theirs
# Internal links (pages, anchors, includes) are checked: with -W a missing one fails the build.
# Python cross-references are not made nitpicky: the docstrings name the frameworks' classes,
# whose docs are not part of this build.
suppress_warnings = ['myst.header']
os.environ.setdefault('MMVIT_DOCS_BUILD', '1')
