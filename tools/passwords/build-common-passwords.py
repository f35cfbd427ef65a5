#!/usr/bin/env python3
"""Build crates/portico-site/assets/common-passwords.txt.gz, the common-password list.

    tools/passwords/build-common-passwords.py [--out PATH] [--check]

The list is two openly licensed lists merged, in this order:

  1. Django's CommonPasswordValidator list, django/contrib/auth/common-passwords.txt.gz
     from the PyPI wheel Django==5.2.19 (BSD-3-Clause): 19,640 passwords.
  2. The "passwords" frequency list of the PyPI package zxcvbn==4.5.0
     (zxcvbn/frequency_lists.py, MIT): 30,000 passwords ranked by frequency.

Every entry is trimmed and lower-cased (the validator compares the trimmed,
lower-cased password), empty lines are dropped, and an entry already seen is
skipped, so Django's entries keep their order and zxcvbn's new ones follow in
their rank order. The output is gzip with no name and no timestamp, so the same
inputs give the same bytes. The wheels are fetched with `pip download` into a
temporary folder; nothing is installed. --check rebuilds in memory and exits 1
if the committed file differs.

The licences of both sources are in crates/portico-site/assets/common-passwords.LICENSE.
"""

import argparse
import ast
import glob
import gzip
import io
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(REPO, "crates", "portico-site", "assets", "common-passwords.txt.gz")
DJANGO = "Django==5.2.19"
ZXCVBN = "zxcvbn==4.5.0"


def wheel(requirement, folder):
    """Downloads one wheel (no dependencies) and returns it opened."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "-d", folder, requirement],
        check=True,
    )
    name = requirement.split("==")[0].lower()
    found = [p for p in glob.glob(os.path.join(folder, "*.whl"))
             if os.path.basename(p).lower().startswith(name + "-")]
    if len(found) != 1:
        sys.exit(f"expected one wheel for {requirement}, found {found}")
    return zipfile.ZipFile(found[0])


def django_passwords(folder):
    with wheel(DJANGO, folder) as whl:
        data = whl.read("django/contrib/auth/common-passwords.txt.gz")
    return gzip.decompress(data).decode("utf-8").splitlines()


def zxcvbn_passwords(folder):
    with wheel(ZXCVBN, folder) as whl:
        source = whl.read("zxcvbn/frequency_lists.py").decode("utf-8")
    # Read the literal rather than import the module: only the data is wanted.
    # It is FREQUENCY_LISTS = {"passwords": "a,b,...".split(","), ...}.
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "passwords":
                    text = value.func.value.value if isinstance(value, ast.Call) else value.value
                    return text.split(",")
    sys.exit("zxcvbn/frequency_lists.py: no passwords list")


def merge(*lists):
    seen, merged = set(), []
    for entries in lists:
        for entry in entries:
            entry = entry.strip().lower()
            if entry and entry not in seen:
                seen.add(entry)
                merged.append(entry)
    return merged


def compress(lines):
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=OUT)
    p.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="common-passwords.") as folder:
        django = django_passwords(folder)
        zxcvbn = zxcvbn_passwords(folder)
    merged = merge(django, zxcvbn)
    data = compress(merged)
    print(f"{len(django)} from Django, {len(zxcvbn)} from zxcvbn, "
          f"{len(merged)} after trimming, lower-casing and removing duplicates")
    if args.check:
        with open(args.out, "rb") as f:
            same = f.read() == data
        print(f"{args.out}: {'up to date' if same else 'differs'}")
        sys.exit(0 if same else 1)
    with open(args.out, "wb") as f:
        f.write(data)
    print(f"wrote {args.out} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
