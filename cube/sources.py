"""The dictionaries the word tasks read, fetched from Debian's archive by ``make setup`` (never at run time).

Each source is one pinned Debian package, checked against its SHA-256 and unpacked without root or dpkg (a .deb is
an ``ar`` archive holding ``data.tar.*``); only the files a parser reads are kept, with the licence. They go to
``$CUBE_SOURCES`` or, by default, ``<venv>/share/cube-bench/sources``, beside the teacher weights the venv holds, so
every checkout, clone and queued experiment that uses this interpreter finds them.

    python -m cube.sources fetch     # what `make setup` and both images run
    python -m cube.sources list      # where each source is and whether it is there
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR = os.environ.get("CUBE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
IMAGES = "cube:cpu and cube:cuda"


class SourceMissing(FileNotFoundError):
    """A dictionary the chosen task needs is not installed on this machine."""


@dataclass(frozen=True)
class DebianSource:
    name: str  # the folder under the sources directory
    package: str
    version: str
    pool_path: str  # under the mirror
    sha256: str
    files: tuple[str, ...]  # kept from the package's data archive (paths inside it)
    description: str

    def folder(self, root: Path | None = None) -> Path:
        return (root or sources_dir()) / self.name

    def installed(self, root: Path | None = None) -> bool:
        folder = self.folder(root)
        return all((folder / Path(member).name).is_file() for member in self.files)


def _freedict(pair: str, sha256: str, language: str) -> DebianSource:
    package = f"dict-freedict-{pair}"
    return DebianSource(
        f"freedict-{pair}", package, "2022.04.21-1", f"pool/main/f/freedict/{package}_2022.04.21-1_all.deb", sha256,
        (f"./usr/share/dictd/freedict-{pair}.index", f"./usr/share/dictd/freedict-{pair}.dict.dz",
         f"./usr/share/doc/{package}/copyright"),
        f"FreeDict {language}-English dictionary (GPL)")


WORDNET_POS = ("noun", "verb", "adj", "adv")
# data.<pos>: synsets with their words and gloss; <pos>.exc: irregular inflections (mice -> mouse)
_WORDNET_FILES = (*(f"./usr/share/wordnet/data.{pos}" for pos in WORDNET_POS),
                  *(f"./usr/share/wordnet/{pos}.exc" for pos in WORDNET_POS), "./usr/share/doc/wordnet-base/copyright")
SOURCES: dict[str, DebianSource] = {
    source.name: source for source in (
        _freedict("deu-eng", "52fa2ba6c73ebe84df0e4a7b8612a94a45e6026a157fc75f5ae36c4a1106e3db", "German"),
        _freedict("fra-eng", "fb853d1f3da00ddddfe60dc3b88b5aaca122eecf3ba5c219131bea479d6274db", "French"),
        DebianSource(
            "wordnet", "wordnet-base", "1:3.0-37", "pool/main/w/wordnet/wordnet-base_3.0-37_all.deb",
            "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
            _WORDNET_FILES,
            "Princeton WordNet 3.0 (WordNet licence)"),
    )
}


def sources_dir() -> Path:
    return Path(os.environ.get("CUBE_SOURCES") or Path(sys.prefix) / "share" / "cube-bench" / "sources")


def require(name: str, root: Path | None = None) -> Path:
    """The folder of an installed source, or an error saying how to get it."""
    source = SOURCES[name]
    if not source.installed(root):
        raise SourceMissing(
            f"{source.description} is not installed in {source.folder(root)}: run `make setup` (it fetches Debian's "
            f"{source.package} {source.version}; or `python -m cube.sources fetch`), set CUBE_SOURCES to a folder "
            f"that holds it, or use the images {IMAGES}, which carry it")
    return source.folder(root)


def _deb_members(data: bytes) -> dict[str, bytes]:
    """The members of an ``ar`` archive (a .deb) by name."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package (no ar header)")
    members, offset = {}, 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members


def unpack(deb: bytes, source: DebianSource, dest: Path) -> None:
    """The source's files from a .deb's data archive into ``dest`` (flat), written whole or not at all."""
    members = _deb_members(deb)
    (data_name,) = [name for name in members if name.startswith("data.tar")]
    with tarfile.open(fileobj=io.BytesIO(members[data_name])) as archive:
        names = set(archive.getnames())
        missing = [member for member in source.files if member not in names]
        if missing:
            raise ValueError(f"{source.package} {source.version} lacks {missing}")
        staging = Path(tempfile.mkdtemp(prefix=f".{source.name}-", dir=dest.parent))
        staging.chmod(0o755)  # readable by the images' non-root user
        try:
            for member in source.files:
                handle = archive.extractfile(member)
                assert handle is not None, member
                (staging / Path(member).name).write_bytes(handle.read())
            shutil.rmtree(dest, ignore_errors=True)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def fetch(source: DebianSource, root: Path | None = None) -> Path:
    """Download (unless installed), check and unpack one source."""
    dest = source.folder(root)
    if source.installed(root):
        return dest
    url = f"{MIRROR.rstrip('/')}/{source.pool_path}"
    with urllib.request.urlopen(url, timeout=120) as response:
        deb = response.read()
    digest = hashlib.sha256(deb).hexdigest()
    if digest != source.sha256:
        raise ValueError(f"{url}: SHA-256 {digest}, expected {source.sha256}; the mirror ({MIRROR}) serves another file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    unpack(deb, source, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cube.sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fetch", "list"])
    args = parser.parse_args(argv)
    if args.command == "list":
        for source in SOURCES.values():
            state = "installed" if source.installed() else "missing"
            print(f"{source.name:18} {state:9} {source.folder()}  ({source.package} {source.version})")
        return 0
    failed = []
    for source in SOURCES.values():
        try:
            print(f"cube.sources: {source.name}: {fetch(source)}")
        except (OSError, ValueError) as err:
            failed.append(source.name)
            print(f"cube.sources: {source.name}: could not fetch {source.package} {source.version}: {err}", file=sys.stderr)
    if failed:
        print(f"cube.sources: the tasks that read {', '.join(failed)} cannot run here; the images {IMAGES} carry "
              "every source", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
