"""Find the Chromium that the browser test drives; on Debian/Ubuntu install it (and CJK fonts).

Looked for in this order (:func:`find_chromium`):

1. ``COURSE_CHROMIUM`` (any Chrome or Chromium executable);
2. the system's ``chromium``, ``chromium-browser``, ``google-chrome``, ``google-chrome-stable``
   on ``PATH``, and the usual macOS application bundles;
3. Playwright's own Chromium, if ``playwright install chromium`` was run.

``--ensure`` (``make browser`` and so ``make test``) also makes sure of what the book's pages
need: when no browser is found, or a browser but no font with Chinese glyphs (``fc-list
:lang=zh`` is empty), and Debian's ``apt-get`` can be used as root (as root, or through
passwordless ``sudo``), it installs ``chromium`` and ``fonts-noto-cjk``; elsewhere it exits 1
with the exact command to run. It prints the browser's path on stdout (nothing when
``COURSE_SKIP_BROWSER=1``), every message on stderr.

    python tools/chromium.py [--ensure]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys

SYSTEM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MACOS_APPS = (
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
DEBIAN_PACKAGES = ("chromium", "fonts-noto-cjk")


def playwright_chromium() -> str | None:
    """The executable of Playwright's own Chromium, if it was downloaded; else None."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
    except Exception:  # no driver, unsupported platform: not available
        return None
    return path if path and os.access(path, os.X_OK) else None


def find_chromium(environ=None, which=shutil.which, playwright=playwright_chromium) -> str | None:
    """The first Chromium of the documented order, or None.

    Raises ``FileNotFoundError`` when ``COURSE_CHROMIUM`` is set to something that is not an
    executable file (a typo should not silently fall back to another browser)."""
    environ = os.environ if environ is None else environ
    chosen = environ.get("COURSE_CHROMIUM")
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise FileNotFoundError(f"COURSE_CHROMIUM must be an executable file, got {chosen!r}")
        return chosen
    for name in SYSTEM_NAMES:
        found = which(name)
        if found:
            return found
    for app in MACOS_APPS:
        if os.access(app, os.X_OK):
            return app
    return playwright()


def has_cjk_font() -> bool | None:
    """Whether fontconfig knows a font for Chinese; None where there is no fontconfig
    (macOS and Windows ship CJK fonts)."""
    if shutil.which("fc-list") is None:
        return None
    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


def apt_prefix() -> list[str] | None:
    """How to run apt-get as root here: ``[]`` as root, ``["sudo", "-n"]`` with passwordless
    sudo; None where apt-get is missing or cannot be run as root without a password."""
    if shutil.which("apt-get") is None:
        return None
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return []
    if shutil.which("sudo"):
        if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
            return ["sudo", "-n"]
    return None


def install_command(packages=DEBIAN_PACKAGES) -> str:
    """The command a person runs to get ``packages`` (or their equivalent) on this system."""
    if shutil.which("apt-get"):
        return f"sudo apt-get install -y {' '.join(packages)}"
    if platform.system() == "Darwin":
        return "brew install --cask chromium   (or set COURSE_CHROMIUM to Google Chrome)"
    return f"{sys.executable} -m playwright install --with-deps chromium"


def apt_install(prefix: list[str], packages=DEBIAN_PACKAGES) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    say(f"installing {' '.join(packages)} with apt-get (the browser test needs them)")
    subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", *packages], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def say(message: str) -> None:
    print(f"chromium: {message}", file=sys.stderr, flush=True)


def ensure() -> str:
    """Find, or install, a Chromium and a CJK font; raise SystemExit(1) with advice if not."""
    try:
        browser = find_chromium()
    except FileNotFoundError as exc:
        raise SystemExit(f"chromium: {exc}") from None
    fonts = has_cjk_font()
    missing = [] if browser else list(DEBIAN_PACKAGES)
    if browser and fonts is False:
        missing = ["fonts-noto-cjk"]
    if missing:
        prefix = apt_prefix()
        if prefix is None:
            what = "no Chromium" if not browser else "no font with Chinese glyphs"
            raise SystemExit(
                f"chromium: {what} for the browser test. Run:\n    {install_command(missing)}\n"
                "or set COURSE_CHROMIUM=/path/to/chrome; COURSE_SKIP_BROWSER=1 skips the test."
            )
        apt_install(prefix, missing)
        browser = find_chromium()
        if browser is None:
            raise SystemExit("chromium: apt-get installed chromium but it is not on PATH")
    say(f"using {browser}")
    return browser


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensure", action="store_true", help="install what is missing if allowed")
    args = parser.parse_args(argv)
    if os.environ.get("COURSE_SKIP_BROWSER") == "1":
        say("COURSE_SKIP_BROWSER=1: the browser test is skipped")
        return 0
    if args.ensure:
        print(ensure())
        return 0
    try:
        browser = find_chromium()
    except FileNotFoundError as exc:
        say(str(exc))
        return 1
    if browser is None:
        say(f"none found; install one: {install_command()}")
        return 1
    print(browser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
