#!/usr/bin/env python3
"""Build the deployable function-app zip: host.json, KubeAudit/function.json and the aks-handler binary
(run bit set in the zip, as the Linux Functions host needs).

  python3 templates/azure-functions/package.py --build          # cargo zigbuild for glibc 2.28, then zip
  python3 templates/azure-functions/package.py --binary PATH    # zip a binary you built yourself

--build needs `pip install cargo-zigbuild ziglang` and `rustup target add x86_64-unknown-linux-gnu`: linking
against glibc 2.28 keeps the binary runnable on every current Functions Linux image.
"""
import argparse
import pathlib
import stat
import subprocess
import sys
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GLIBC_TARGET = "x86_64-unknown-linux-gnu.2.28"


def build() -> pathlib.Path:
    subprocess.run(
        ["cargo", "zigbuild", "--release", "--locked", "-p", "kaf-aks", "--target", GLIBC_TARGET],
        cwd=ROOT,
        check=True,
    )
    return ROOT / "target" / "x86_64-unknown-linux-gnu" / "release" / "aks-handler"


def package(binary: pathlib.Path, out: pathlib.Path) -> None:
    if not binary.is_file():
        sys.exit(f"no binary at {binary}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(entry("host.json", 0o644), (HERE / "host.json").read_bytes())
        zf.writestr(entry("KubeAudit/function.json", 0o644), (HERE / "KubeAudit" / "function.json").read_bytes())
        zf.writestr(entry("aks-handler", 0o755), binary.read_bytes())
    print(out)


def entry(name: str, mode: int) -> zipfile.ZipInfo:
    """A zip entry whose Unix mode survives unpacking whatever OS built it: `create_system` 3 (Unix) says the
    high bits of `external_attr` are a Unix mode. ZipInfo's default is 0 (MS-DOS) on Windows, and an
    unpacker then ignores the mode: the handler would lose its run bit."""
    info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--build", action="store_true", help="build aks-handler with cargo zigbuild first")
    source.add_argument("--binary", type=pathlib.Path, help="an aks-handler binary built elsewhere")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "target" / "azure-functions.zip")
    args = parser.parse_args()
    package(build() if args.build else args.binary, args.out)


if __name__ == "__main__":
    main()
