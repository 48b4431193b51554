#!/usr/bin/env python3
"""Keeps the committed fuzz corpus small: runs every input of a corpus once
through the cargo-fuzz binary (libFuzzer's merge, which records the edges
and features each input covers), then keeps the inputs that cover the most
edges, greedily (each pick adds the most edges not yet covered, the
smaller input on a tie), until every edge is covered or MAX are kept.
Full coverage takes hundreds of inputs per target (a long tail of inputs
that each reach one error branch), so the committed corpus is this seed
set; scripts/fuzz.sh keeps the whole corpus in target/fuzz-corpus/.

The corpus read is --from DIR (default fuzz/corpus/TARGET); fuzz/corpus/
TARGET is left holding exactly the kept inputs. Prints what they retain.

Usage: scripts/fuzz-select.py [--max N] [--from DIR] [--dry-run] TARGET...
Needs the binaries `cargo +nightly fuzz build --fuzz-dir fuzz/libfuzzer`
makes (scripts/fuzz.sh builds them).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "fuzz/libfuzzer/target/x86_64-unknown-linux-gnu/release")


def coverage(target, corpus):
    """{path: (size, edges, features)} for every input of `corpus`."""
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        run = subprocess.run(
            [os.path.join(BIN, target), "-merge=1", f"-merge_control_file={control}",
             "-rss_limit_mb=4096", "-max_len=65536", out, corpus],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            sys.exit(f"{target}: the merge failed:\n{run.stderr[-2000:]}")
        with open(control) as f:
            lines = f.read().splitlines()
    count = int(lines[0])
    paths = lines[2:2 + count]
    info = {p: [0, set(), set()] for p in paths}
    for line in lines[2 + count:]:
        parts = line.split()
        if len(parts) < 2 or parts[0] not in ("STARTED", "FT", "COV"):
            continue
        path = paths[int(parts[1])]
        if parts[0] == "STARTED":
            info[path][0] = int(parts[2])
        elif parts[0] == "FT":
            info[path][2] = set(parts[2:])
        else:
            info[path][1] = set(parts[2:])
    return info


def select(info, most):
    left = set().union(*(e for _, e, _ in info.values()))
    kept = []
    while left and len(kept) < most:
        best = max(info, key=lambda p: (len(info[p][1] & left), -info[p][0]))
        gain = info[best][1] & left
        if not gain:
            break
        kept.append(best)
        left -= gain
    return kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max", type=int, default=20)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--from", dest="source", default=None)
    parser.add_argument("targets", nargs="+")
    args = parser.parse_args()
    if args.source and len(args.targets) != 1:
        sys.exit("--from takes one target")
    for target in args.targets:
        committed = os.path.join(ROOT, "fuzz/corpus", target)
        corpus = os.path.abspath(args.source) if args.source else committed
        info = coverage(target, corpus)
        kept = select(info, args.max)
        edges = set().union(*(e for _, e, _ in info.values()))
        feats = set().union(*(f for _, _, f in info.values()))
        kept_edges = set().union(set(), *(info[p][1] for p in kept))
        kept_feats = set().union(set(), *(info[p][2] for p in kept))
        print(f"{target}: {len(info)} -> {len(kept)} files, "
              f"edges {len(kept_edges)}/{len(edges)}, features {len(kept_feats)}/{len(feats)}")
        if args.dry_run:
            continue
        os.makedirs(committed, exist_ok=True)
        keep = {os.path.basename(p) for p in kept}
        for name in os.listdir(committed):
            if name not in keep:
                os.remove(os.path.join(committed, name))
        for path in kept:
            target_path = os.path.join(committed, os.path.basename(path))
            if os.path.abspath(path) != os.path.abspath(target_path):
                shutil.copyfile(path, target_path)


if __name__ == "__main__":
    main()
