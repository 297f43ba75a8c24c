"""Find what the built manual cuts off: every element of a page's content that reaches past the
window's right edge with no scrolling box around it, at the widths readers use.

    python -m sphinx -b html docs/en docs/en/_build/html
    python tools/docs/check_layout.py docs/en/_build/html [--widths 1280 390] [--chromium PATH]

Each page is loaded in headless Chromium (Debian's ``chromium`` package) from a copy of the
built site with a small script added, which measures the laid-out page and writes its findings
into the DOM that ``--dump-dom`` prints. A table or code block that scrolls inside the content
column is fine; one that runs past the column's right edge (into the sidebar, or cut off), or
makes the whole page scroll sideways, is reported with its page, width and the start of its
text. Exit status 1 when
anything is cut off.
"""
import argparse
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import tempfile

PROBE = r'''
<script>
window.addEventListener('load', function () {
  var width = document.documentElement.clientWidth, cut = [];
  var main = document.querySelector('article') || document.body;
  // the content column: what reaches past its right edge is hidden or runs into the sidebar
  var edge = Math.min(width, main.getBoundingClientRect().right);
  function scrolls(el) {
    for (var p = el; p && p !== main.parentElement; p = p.parentElement) {
      var s = getComputedStyle(p).overflowX;
      if ((s === 'auto' || s === 'scroll') && p.getBoundingClientRect().right <= edge + 1) {
        return true;
      }
    }
    return false;
  }
  main.querySelectorAll('table, pre, p, li, dd, img, .highlight').forEach(function (el) {
    var r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > edge + 1 && !scrolls(el)) {
      cut.push({tag: el.tagName.toLowerCase(), right: Math.round(r.right),
                text: (el.innerText || '').trim().slice(0, 80)});
    }
  });
  var report = document.createElement('pre');
  report.id = 'layout-report';
  report.textContent = JSON.stringify({page_width: document.documentElement.scrollWidth,
                                       window: width, cut: cut});
  document.body.appendChild(report);
});
</script>
'''


def find_chromium(given=None):
    for name in [given] if given else ['chromium', 'chromium-browser', 'google-chrome']:
        path = shutil.which(name) if name else None
        if path:
            return path
    raise SystemExit('error: no Chromium found; install it (Debian: apt-get install chromium) '
                     'or pass --chromium PATH')


def pages(site):
    for root, _, files in os.walk(site):
        rel_root = osp.relpath(root, site)
        if rel_root.split(os.sep)[0].startswith('_'):
            continue  # _static, _sources, _modules (highlighted source listings)
        for name in sorted(files):
            if name.endswith('.html') and name not in ('genindex.html', 'search.html',
                                                       'py-modindex.html'):
                yield osp.normpath(osp.join(rel_root, name))


FRAME = '''<html><body style="margin:0">
<iframe id="page" src="{src}" style="width:{width}px;height:900px;border:0"></iframe>
<script>
// headless Chromium lays a window out at least 500 px wide: the page runs in a frame of the
// width asked for (its media queries see that width) and its report is copied out
var frame = document.getElementById('page');
frame.addEventListener('load', function () {{
  setTimeout(function () {{
    var report = frame.contentDocument.getElementById('layout-report');
    var out = document.createElement('pre');
    out.id = 'layout-report';
    out.textContent = report ? report.textContent : 'null';
    document.body.appendChild(out);
  }}, 500);
}});
</script></body></html>
'''


def check_page(chromium, path, width):
    frame = osp.join(osp.dirname(path), f'.layout-frame-{width}.html')
    with open(frame, 'w') as f:
        f.write(FRAME.format(src=osp.basename(path), width=width))
    proc = subprocess.run(
        [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
         '--allow-file-access-from-files', f'--window-size={width + 20},900',
         '--virtual-time-budget=5000', '--dump-dom', 'file://' + frame],
        capture_output=True, text=True, timeout=120)
    os.remove(frame)
    found = re.search(r'<pre id="layout-report">(.*?)</pre>', proc.stdout, re.S)
    if not found or found.group(1) == 'null':
        raise RuntimeError(f'no layout report from Chromium for {path}: {proc.stderr[-500:]}')
    text = found.group(1).replace('&quot;', '"').replace('&lt;', '<').replace('&gt;', '>')
    return json.loads(text.replace('&amp;', '&'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument('site', help='the built HTML (docs/en/_build/html)')
    p.add_argument('--widths', type=int, nargs='+', default=[1280, 390])
    p.add_argument('--chromium', help='the browser binary (default: chromium on PATH)')
    p.add_argument('--pages', nargs='*', help='only these pages (paths inside the site)')
    args = p.parse_args(argv)
    if not osp.isfile(osp.join(args.site, 'index.html')):
        raise SystemExit(f'error: {args.site} has no index.html; build the manual first '
                         '(python -m sphinx -b html docs/en docs/en/_build/html)')
    chromium = find_chromium(args.chromium)
    problems = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = osp.join(tmp, 'site')
        shutil.copytree(args.site, copy)
        for page in args.pages or list(pages(copy)):
            path = osp.join(copy, page)
            with open(path) as f:
                html = f.read()
            with open(path, 'w') as f:
                f.write(html.replace('</body>', PROBE + '</body>'))
            for width in args.widths:
                report = check_page(chromium, path, width)
                for item in report['cut']:
                    problems += 1
                    print(f'{page} at {width} px: <{item["tag"]}> reaches {item["right"]} px: '
                          f'{item["text"]!r}')
                if report['page_width'] > report['window'] + 1:
                    problems += 1
                    print(f'{page} at {width} px: the page is {report["page_width"]} px wide '
                          f'(scrolls sideways)')
    checked = len(args.pages or list(pages(args.site)))
    print(f'{checked} pages at {", ".join(map(str, args.widths))} px: '
          + (f'{problems} cut off' if problems else 'nothing cut off'))
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
