#!/usr/bin/env python3
"""Build the Chinese captcha alphabet and the CJK font subset that draws it.

Two sub-commands:

  subset-cjk.py subset [--charset-rs PATH] [--out PATH]
      Cuts Noto Sans CJK SC Bold (Debian package fonts-noto-cjk) down to
      exactly the characters of the `ZH` array in crates/portico/src/captcha/charset.rs
      with fontTools' pyftsubset and writes
      crates/portico/assets/fonts/NotoSansCJKsc-Bold-captcha.otf.
      The outlines stay CFF: ab_glyph (ttf-parser) reads CFF directly and CFF
      subsets are smaller than glyf conversions.

  subset-cjk.py charset [--count N] [--max-strokes S]
      Prints the ranked alphabet as the Rust `ZH` array, to paste into
      charset.rs when the selection rules change. Sources:
        * GB2312 level 1 (rows 16-55, bytes B0A1..D7F9), decoded by Python's
          gb2312 codec;
        * character frequency = sum of the frequencies of the words containing
          the character in jieba's dictionary (PyPI package jieba 0.42.1,
          jieba/dict.txt, a large simplified-Chinese corpus count);
        * stroke counts from Unihan kTotalStrokes (Debian package unicode-data);
        * a hand-made list of look-alike groups that are dropped entirely.

Needs: `pip install fonttools` (and `pip install jieba`, `apt-get install
unicode-data` for the charset command only).
"""

import argparse
import bz2
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
CHARSET_RS = os.path.join(REPO, "crates", "portico", "src", "captcha", "charset.rs")
OUT = os.path.join(REPO, "crates", "portico", "assets", "fonts", "NotoSansCJKsc-Bold-captcha.otf")
TTC = "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc"
TTC_SC_INDEX = 2  # 0 JP, 1 KR, 2 SC, 3 TC, 4 HK in Debian's NotoSansCJK-Bold.ttc

# Characters people mix up once rotated, warped and crossed by strokes.
# Every member of a group is dropped, not just the rarer one, because the
# reader cannot know which of the pair the image means.
LOOKALIKES = [
    "己已巳", "未末", "土士", "人入八", "日曰", "干千于", "大太犬", "王玉主",
    "刀力", "天夫", "午牛", "卜十", "戊戌戍", "免兔", "折拆", "候侯", "贝见",
    "田由甲申", "问间", "今令",
]


def gb2312_level1():
    chars = []
    for hi in range(0xB0, 0xD8):
        for lo in range(0xA1, 0xFF):
            if hi == 0xD7 and lo > 0xF9:
                continue
            chars.append(bytes([hi, lo]).decode("gb2312"))
    return chars


def charset_from_rs(path):
    src = open(path, encoding="utf-8").read()
    m = re.search(r'static ZH: \[char; \w+\] = \[(.*?)\];', src, re.S)
    if not m:
        sys.exit(f"no `static ZH` array in {path}")
    text = "".join(re.findall(r"'(.)'", m.group(1)))
    if not text:
        sys.exit("empty ZH array")
    return text


def cmd_subset(args):
    text = charset_from_rs(args.charset_rs)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write(text)
        textfile = f.name
    try:
        subprocess.run(
            [
                sys.executable, "-m", "fontTools.subset", TTC,
                f"--font-number={TTC_SC_INDEX}",
                f"--text-file={textfile}",
                f"--output-file={args.out}",
                # Only outlines and metrics are read: no hinting, no layout
                # features, no glyph names, smallest possible name table.
                "--no-hinting", "--desubroutinize",
                "--layout-features=", "--no-glyph-names",
                "--name-IDs=0,1,2,3,4,5,6", "--drop-tables+=DSIG,vhea,vmtx,VORG,GSUB,GPOS,BASE",
                "--notdef-outline",
            ],
            check=True,
        )
    finally:
        os.unlink(textfile)
    from fontTools.ttLib import TTFont

    font = TTFont(args.out)
    cmap = font.getBestCmap()
    have = {chr(c) for c in cmap}
    missing = [c for c in text if c not in have]
    extra = sorted(have - set(text))
    if missing or extra:
        sys.exit(f"subset mismatch: missing {missing!r} extra {extra!r}")
    print(f"{args.out}: {len(text)} glyphs, {os.path.getsize(args.out)} bytes")


def stroke_counts():
    counts = {}
    path = "/usr/share/unicode/Unihan_IRGSources.txt.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if "\tkTotalStrokes\t" in line:
                cp, _, val = line.rstrip("\n").split("\t")
                # First value is the count for the China (G) source form.
                counts[chr(int(cp[2:], 16))] = int(val.split()[0])
    return counts


def cmd_charset(args):
    import jieba

    freq = {}
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 2:
                continue
            word, n = parts[0], int(parts[1])
            for ch in word:
                freq[ch] = freq.get(ch, 0) + n
    strokes = stroke_counts()
    banned = set("".join(LOOKALIKES))
    level1 = gb2312_level1()
    ranked = sorted(level1, key=lambda c: (-freq.get(c, 0), c))
    chosen = [
        c for c in ranked
        if c not in banned and 2 <= strokes.get(c, 99) <= args.max_strokes
    ][: args.count]
    # Stored in code point order: the rank only decides membership, and a
    # sorted list makes review diffs readable.
    chosen.sort()
    print(f"pub(crate) static ZH: [char; {len(chosen)}] = [")
    for i in range(0, len(chosen), 16):
        print("    " + " ".join(f"'{c}'," for c in chosen[i:i + 16]))
    print("];")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("subset")
    s.add_argument("--charset-rs", default=CHARSET_RS)
    s.add_argument("--out", default=OUT)
    c = sub.add_parser("charset")
    c.add_argument("--count", type=int, default=800)
    c.add_argument("--max-strokes", type=int, default=11)
    args = p.parse_args()
    {"subset": cmd_subset, "charset": cmd_charset}[args.cmd](args)


if __name__ == "__main__":
    main()
