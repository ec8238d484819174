"""Open the built documentation in headless Chromium and fail on anything broken.

Usage (after building the site, from the project root)::

    python docs/check_site.py [--html docs/_build/html] [--screenshots docs/_build/screenshots]

The built HTML is served from a local HTTP server on 127.0.0.1 only. Playwright drives the
system's Chromium (Debian's ``chromium`` package, ``/usr/bin/chromium``; set
``SKDAE_CHROMIUM`` or ``--browser`` for another path); it never downloads a browser, and a
missing browser is an error, not a skip. Pages checked: the index, the API reference, the
``RBMStackAutoencoder`` page, the command-line reference, every user-guide page and every
gallery page. A page fails on:

- a console error or an uncaught JavaScript exception;
- a request that fails, answers with an HTTP error, or leaves the local server (the site
  must work offline);
- an image that does not load (``naturalWidth == 0``);
- an internal link whose page or ``#anchor`` does not exist;
- an empty page (less than 200 characters of text in its main content).

A full-page screenshot of every page is saved to the screenshots folder (outside git).
Exit code 0 if every page passes, 1 otherwise.
"""

import argparse
import functools
import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

DOCS = Path(__file__).resolve().parent
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIN_TEXT = 200
MIN_GALLERY_PAGES = 8

# Makes lazy images load, then waits until each has loaded or failed.
_IMAGES_JS = """
async () => {
  const images = [...document.images];
  for (const img of images) img.loading = "eager";
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth}));
}
"""
_LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"
_TEXT_JS = """
() => {
  const main = document.querySelector("main article") || document.querySelector("main")
    || document.body;
  return main.innerText.trim().length;
}
"""
_ID = re.compile(r"""\bid=["']([^"']+)["']""")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(root):
    """Serve ``root`` on 127.0.0.1 at a free port; return ``(server, base URL)``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages_to_check(root):
    """Relative paths of the pages to load; raises if the build looks incomplete."""
    fixed = [
        "index.html",
        "api.html",
        "cli.html",
        "generated/skdae.RBMStackAutoencoder.html",
    ]
    guide = sorted(p.relative_to(root).as_posix() for p in (root / "user_guide").glob("*.html"))
    gallery = sorted(
        p.relative_to(root).as_posix() for p in (root / "auto_examples").glob("*.html")
    )
    missing = [p for p in fixed if not (root / p).is_file()]
    n_examples = sum(1 for p in gallery if Path(p).name.startswith("plot_"))
    if missing or len(guide) < 2 or n_examples < MIN_GALLERY_PAGES:
        raise SystemExit(
            f"{root} is not a complete build: missing {missing}, {len(guide)} user-guide "
            f"pages, {n_examples} gallery examples (at least {MIN_GALLERY_PAGES})"
        )
    return fixed + guide + gallery


class LinkChecker:
    """Resolve internal links against the files of the build, anchors included."""

    def __init__(self, root, base):
        self.root, self.base = root, base
        self._ids = {}

    def _file(self, url):
        path = unquote(urlsplit(url).path)
        target = (self.root / path.lstrip("/")).resolve()
        if target.is_dir():
            target = target / "index.html"
        return target

    def problem(self, url):
        """None if ``url`` (internal) resolves, else what is wrong."""
        page, fragment = urldefrag(url)
        target = self._file(page)
        if not target.is_relative_to(self.root.resolve()) or not target.is_file():
            return "no such file"
        if fragment and target.suffix == ".html":
            if target not in self._ids:
                self._ids[target] = set(_ID.findall(target.read_text(errors="replace")))
            if unquote(fragment) not in self._ids[target]:
                return f"no element with id {fragment!r}"
        return None


def check_page(context, base, rel, links, screenshots):
    """Load one page; return a list of problems."""
    problems = []
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"JavaScript exception: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on(
        "response",
        lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"),
    )

    def only_local(route):
        if route.request.url.startswith(base) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            problems.append(f"request leaves the local server: {route.request.url}")
            route.abort()

    page.route("**/*", only_local)
    url = urljoin(base, rel)
    try:
        page.goto(url, wait_until="load", timeout=60_000)
        page.wait_for_load_state("networkidle", timeout=30_000)
        for image in page.evaluate(_IMAGES_JS):
            if image["width"] == 0:
                problems.append(f"image did not load: {image['src']}")
        for href in sorted(set(page.evaluate(_LINKS_JS))):
            if href.startswith(base):
                issue = links.problem(href)
                if issue:
                    problems.append(f"broken link {href[len(base) - 1:]}: {issue}")
        n_chars = page.evaluate(_TEXT_JS)
        if n_chars < MIN_TEXT:
            problems.append(f"empty page: {n_chars} characters of text")
        shot = screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")
        page.screenshot(path=str(shot), full_page=True)
    except Exception as exc:  # a timeout or a crashed page is a failure too
        problems.append(f"could not load: {exc}")
    finally:
        page.close()
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html",
                        help="the built site (default: docs/_build/html)")
    parser.add_argument("--screenshots", type=Path, default=DOCS / "_build" / "screenshots",
                        help="folder for the screenshots (default: docs/_build/screenshots)")
    parser.add_argument("--browser", default=os.environ.get("SKDAE_CHROMIUM", "/usr/bin/chromium"),
                        help="Chromium executable (default: $SKDAE_CHROMIUM or /usr/bin/chromium)")
    args = parser.parse_args(argv)

    if not Path(args.browser).is_file():
        print(f"error: no Chromium at {args.browser}: install Debian's chromium package "
              "(apt-get install chromium) or pass --browser", file=sys.stderr)
        return 1
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: Playwright for Python is missing: pip install '.[docs]'", file=sys.stderr)
        return 1

    root = args.html.resolve()
    pages = pages_to_check(root)
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, base = serve(root)
    links = LinkChecker(root, base)
    failures = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.browser, args=LAUNCH_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for rel in pages:
                problems = check_page(context, base, rel, links, args.screenshots)
                print(f"{'FAIL' if problems else 'ok  '} {rel}")
                for problem in problems:
                    print(f"       {problem}")
                failures += bool(problems)
            browser.close()
    finally:
        server.shutdown()
    print(f"screenshots in {args.screenshots}")
    print(f"{len(pages) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
