"""Screenshots of the built docs in headless Chromium with the network off, and layout checks.

Run after an HTML build::

    python -m sphinx -b html docs docs/_build/html
    python docs/screenshots.py                         # -> docs/_build/screenshots/*.png
    python docs/screenshots.py --pages performance --widths 390 --out /tmp/shots

For every page and window width it writes a full-page PNG (``<page>-<width>.png``) and prints what
it checked, so a look at the pictures can be repeated by anyone:

* math: every ``.math`` element was typeset by MathJax, with no MathJax error and no raw TeX left;
* width: nothing makes the page wider than the window, and every code block or table that is wider
  than its box can be scrolled (is not cut off);
* images: every image loaded.

Chromium (``chromium`` or ``google-chrome`` on the PATH, or ``--chromium``) is driven through the
DevTools protocol over a pipe (``--remote-debugging-pipe``), so nothing but the standard library
is needed. The network is off: Chromium runs in a new network namespace (``unshare -n``) where that
is allowed, and always with a proxy that points nowhere, so a page that needs a CDN shows it.
Exit status 1 when a check fails.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAGES = ["index", "quickstart", "generated/fastoptim.Adam", "schedulers", "performance",
         "guide/migrating"]
WIDTHS = [1280, 390]
HEIGHT = 900

# Runs in the page: a JSON-able report of what a reader would see go wrong.
CHECK_PAGE = r"""
(() => {
  const width = window.innerWidth;
  const math = document.querySelectorAll('.math').length;
  const typeset = document.querySelectorAll('.math mjx-container, mjx-container').length;
  const errors = document.querySelectorAll('mjx-merror').length;
  const rawTex = [...document.querySelectorAll('.math')]
      .filter(e => !e.querySelector('mjx-container') && /\\[a-zA-Z]/.test(e.textContent)).length;
  const cut = [];
  const scrolls = [];
  for (const e of document.querySelectorAll('h1, h2, pre, table, img, .highlight, mjx-container[display="true"]')) {
    if (e.closest('.d-none') || e.offsetParent === null) continue;
    const wider = e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1;
    const box = e.getBoundingClientRect();
    let clipped = false;
    for (let p = e; p && p !== document.body; p = p.parentElement) {
      const style = getComputedStyle(p);
      if (p.scrollWidth > p.clientWidth + 1 && ['auto', 'scroll'].includes(style.overflowX)) {
        scrolls.push(e.tagName.toLowerCase() + ' ' + (e.textContent || e.alt || '').trim().replace(/\s+/g, ' ').slice(0, 60));
        clipped = null;
        break;
      }
    }
    if (clipped === null) continue;
    if (wider || box.right > width + 1) {
      cut.push(e.tagName.toLowerCase() + ' ' + (e.textContent || e.alt || '').trim().slice(0, 50));
    }
  }
  // the text column itself must never scroll sideways (only boxes inside it may)
  for (const e of document.querySelectorAll('.bd-article-container, .bd-main, .bd-content')) {
    if (e.scrollWidth > e.clientWidth + 1) cut.push(e.className.split(' ')[0] + ' scrolls sideways');
  }
  const broken = [...document.images].filter(i => i.complete && i.naturalWidth === 0)
      .map(i => i.getAttribute('src'));
  return JSON.stringify({
    title: document.title, pageWidth: document.documentElement.scrollWidth, width,
    height: document.documentElement.scrollHeight, math, typeset, errors, rawTex,
    cut: [...new Set(cut)], scrolls: [...new Set(scrolls)], broken,
  });
})()
"""


class Chromium:
    """Headless Chromium over ``--remote-debugging-pipe`` (fd 3: commands, fd 4: replies)."""

    def __init__(self, binary, offline=True):
        self.profile = tempfile.mkdtemp(prefix="fastoptim-shots-")
        cmd = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox",
               "--disable-gpu", "--no-first-run", "--mute-audio",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--user-data-dir={self.profile}", "--allow-file-access-from-files",
               "about:blank"]
        self.network_namespace = False
        if offline and shutil.which("unshare") and subprocess.run(
                ["unshare", "-n", "true"], capture_output=True).returncode == 0:
            cmd = ["unshare", "-n", *cmd]
            self.network_namespace = True
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child's fd 3 reads our commands, its fd 4 writes the replies (moved out of the way
        # first, so that neither dup2 overwrites the other pipe's end)
        high_r, high_w = os.dup(to_child_r) + 100, os.dup(from_child_w) + 100
        os.dup2(to_child_r, high_r)
        os.dup2(from_child_w, high_w)

        def pass_pipes():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=pass_pipes,
                                     pass_fds=(3, 4, high_r, high_w))
        for fd in (to_child_r, from_child_w, high_r, high_w):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Runtime.enable", session=True)

    def send(self, method, params=None, session=False, timeout=60):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _read(self, deadline):
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium exited")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=True)
        return result["result"].get("value")

    def shoot(self, url, width, path, dark=False):
        """Load ``url`` in a ``width`` px window, wait for MathJax, check, save a full-page PNG."""
        mobile = width < 600
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": mobile},
                  session=True)
        self.send("Page.navigate", {"url": url}, session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(0.3)
            state = self.evaluate(
                "document.readyState === 'complete' && (!window.MathJax || !MathJax.startup "
                "|| !MathJax.startup.promise ? true : MathJax.startup.promise.then(() => true))")
            if state:
                break
        if dark:                               # the theme's dark mode, as its switch sets it
            self.evaluate("document.documentElement.dataset.mode = 'dark';"
                          "document.documentElement.dataset.theme = 'dark'")
        time.sleep(0.5)                        # web fonts and the last layout
        report = json.loads(self.evaluate(CHECK_PAGE))
        height = min(report["height"], 16000)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
                  session=True)
        time.sleep(0.3)
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        return report

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


def problems_of(report):
    found = []
    if report["typeset"] < report["math"] or report["rawTex"]:
        found.append(f"math not typeset ({report['typeset']} of {report['math']}, "
                     f"{report['rawTex']} with raw TeX)")
    if report["errors"]:
        found.append(f"{report['errors']} MathJax error(s)")
    if report["pageWidth"] > report["width"] + 1:
        found.append(f"page is {report['pageWidth']} px wide in a {report['width']} px window")
    found += [f"cut off: {what}" for what in report["cut"]]
    found += [f"image did not load: {src}" for src in report["broken"]]
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(HERE, "_build", "html"),
                        help="the HTML build (default docs/_build/html)")
    parser.add_argument("--out", default=os.path.join(HERE, "_build", "screenshots"))
    parser.add_argument("--pages", nargs="+", default=PAGES, help="pages, without .html")
    parser.add_argument("--widths", nargs="+", type=int, default=WIDTHS)
    parser.add_argument("--chromium", default=None, help="the browser binary")
    parser.add_argument("--online", action="store_true", help="leave the network on")
    parser.add_argument("--dark", action="store_true", help="the pages in dark mode")
    parser.add_argument("--verbose", action="store_true",
                        help="also list the boxes that scroll sideways (allowed, but worth a look)")
    args = parser.parse_args(argv)
    binary = args.chromium or next((shutil.which(b) for b in ("chromium", "chromium-browser",
                                                               "google-chrome") if shutil.which(b)),
                                   None)
    if binary is None:
        parser.error("no Chromium found: install it (apt-get install chromium) or pass --chromium")
    os.makedirs(args.out, exist_ok=True)
    browser = Chromium(binary, offline=not args.online)
    print(f"Chromium {'in a network namespace without a network' if browser.network_namespace else 'with a dead proxy'}"
          if not args.online else "Chromium with the network on")
    failed = 0
    try:
        for page in args.pages:
            html = os.path.join(os.path.abspath(args.build), page + ".html")
            if not os.path.exists(html):
                parser.error(f"{html} does not exist: build the docs first")
            for width in args.widths:
                name = f"{page.replace('/', '_')}-{width}{'-dark' if args.dark else ''}.png"
                path = os.path.join(args.out, name)
                report = browser.shoot("file://" + html, width, path, dark=args.dark)
                found = problems_of(report)
                failed += bool(found)
                print(f"{page:28} {width:5} px  {report['height']:6} px tall  math "
                      f"{report['typeset']}/{report['math']}  wide boxes scrolling "
                      f"{len(report['scrolls'])}  {'OK' if not found else 'PROBLEMS'}  -> {path}")
                if args.verbose:
                    for what in report["scrolls"]:
                        print(f"    scrolls: {what}")
                for problem in found:
                    print(f"    {problem}")
    finally:
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
