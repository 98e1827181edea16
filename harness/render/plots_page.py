"""`dvc plots show` offline: an HTML template with vega, vega-lite and vega-embed inlined, and a check that the page
renders every plot in headless Chromium with no network.

DVC's own page loads the three libraries from a CDN when it is opened, so offline it stays blank. The template
carries them instead, taken at setup from the ``vl-convert-python`` wheel (its ``javascript_bundle``), and
``.dvc/config`` points ``plots.html_template`` at it:

    python -m harness plots-page template            (make setup runs it)
    python -m harness plots-page check [--screenshot plots.png] [--html-template FILE]

``check`` runs ``dvc plots show`` into a scratch folder, opens the page in headless Chromium with every host
unreachable, and counts the plots vega-embed drew against the plots on the page; exit 1 when any is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from cube import atomic

TEMPLATE = Path(".dvc/plots-offline.html")  # what .dvc/config's plots.html_template names (relative to .dvc/)
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <script>
%s
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""
# Chromium with no way out: every host name fails to resolve, and any proxy use goes nowhere
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def write_template(path: Path = TEMPLATE) -> Path:
    """The page DVC fills in, with the libraries inline (about 0.9 MB); ``{scripts}`` is left out on purpose: it
    is where DVC would put its CDN script tags."""
    try:
        import vl_convert
    except ImportError:
        raise SystemExit("plots_page: vl-convert-python is not installed, and it carries the vega libraries the page "
                         "inlines; run `make setup` (or pip install -e '.[dev]')") from None
    bundle = vl_convert.javascript_bundle().replace("</script", "<\\/script")
    atomic.write_text(path, PAGE % bundle)
    return path


def find_chromium() -> str | None:
    return next((found for name in CHROMIUMS if (found := shutil.which(name))), None)


def chromium(page: Path, *args: str) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise SystemExit("plots_page: no Chromium found (Debian: apt-get install chromium)")
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *OFFLINE,
               "--virtual-time-budget=20000", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def rendered_plots(page: Path) -> tuple[int, int]:
    """(plots drawn, plots on the page): vega-embed puts a canvas or svg of class "marks" in each plot's div."""
    dom = chromium(page, "--dump-dom").stdout
    body = page.read_text(encoding="utf-8").split("<body>", 1)[-1]  # the plots' own scripts, not the libraries
    expected = len(re.findall(r"vegaEmbed\(", body))
    drawn = len(re.findall(r'<(?:canvas|svg)[^>]*class="marks"', dom))
    return drawn, expected


def show(out: Path, html_template: Path | None) -> Path:
    """``dvc plots show`` into ``out``; the page it wrote."""
    command = [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)]
    if html_template is not None:
        command += ["--html-template", str(html_template)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"plots_page: `dvc plots show` failed (exit {result.returncode}) in {Path.cwd()}: "
                         f"{(result.stderr or result.stdout).strip()[-500:]}\nRun it from the repository's root, "
                         f"after `make setup` (which writes {TEMPLATE}) and a pipeline run that logged curves.")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness plots-page", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("template", help=f"write {TEMPLATE} from the installed vl-convert-python")
    check = sub.add_parser("check", help="render `dvc plots show` offline in headless Chromium and count the plots")
    check.add_argument("--screenshot", type=Path, help="also save a PNG of the page here")
    check.add_argument("--html-template", type=Path, help="a template other than .dvc/config's")
    args = parser.parse_args(argv)
    if args.command == "template":
        print(f"wrote {write_template()}")
        return 0
    with tempfile.TemporaryDirectory(prefix="cube-plots-") as scratch:
        page = show(Path(scratch), args.html_template)
        drawn, expected = rendered_plots(page)
        if args.screenshot:
            chromium(page, f"--screenshot={args.screenshot.resolve()}", "--window-size=1400,2400")
    verdict = "ok" if drawn == expected > 0 else "FAILED"
    print(f"plots_page: {verdict}: {drawn} of {expected} plots drawn by headless Chromium with no network")
    return 0 if verdict == "ok" else 1
