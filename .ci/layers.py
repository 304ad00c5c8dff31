#!/usr/bin/env python3
"""The layout reads as the stack, checked rather than remembered (issue 13).

1. Crates: each workspace crate's normal dependencies are crates listed above it in the
   workspace's `members`, which run bottom to top, so `cargo tree` reads like the paper's figure.
2. Files: no file circle inside a crate. File A depends on file B when A names an item of B's
   module (a `crate::`, `super::` or `self::` path, or a child module's name), seen through the
   `pub use` re-exports of index files. An index file (`lib.rs`, `main.rs`, `mod.rs`) naming its
   own descendants is its table of contents, not a dependency. A strongly connected component of
   more than one file is a circle. Comments and strings are ignored; `impl` blocks are not
   followed (a method call does not name the file that defines the method).

Run from the workspace root: `python3 .ci/layers.py`. Prints the crate order; exits 1 on any
violation.
"""
import json
import os
import re
import subprocess
import sys
import tomllib


def check_crates():
    meta = json.loads(
        subprocess.check_output(["cargo", "metadata", "--format-version", "1", "--no-deps"])
    )
    members = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["members"]
    rank = {}
    for p in meta["packages"]:
        folder = os.path.dirname(p["manifest_path"])
        for i, m in enumerate(members):
            if folder.endswith("/" + m):
                rank[p["name"]] = i
    bad = 0
    for p in sorted(meta["packages"], key=lambda p: rank[p["name"]]):
        deps = sorted(
            d["name"] for d in p["dependencies"] if d["name"] in rank and d["kind"] is None
        )
        for d in deps:
            if rank[d] >= rank[p["name"]]:
                bad += 1
                print(f"VIOLATION: {p['name']} depends on {d}, listed at or below it")
        print(f"  {rank[p['name']]:2} {p['name']}: {', '.join(deps) or '-'}")
    return bad


def crate_files(src):
    files = {}
    for d, _, names in os.walk(src):
        for f in names:
            if f.endswith(".rs"):
                path = os.path.join(d, f)
                parts = os.path.relpath(path, src)[:-3].split(os.sep)
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                files[tuple(parts)] = path
    return files


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


GROUP = re.compile(r"((?:\w+::)+)\{([^{}]*)\}")


def expand_groups(text):
    """`a::b::{C, d::E, self}` -> `a::b::C a::b::d::E a::b`, innermost groups first."""

    def one(m):
        prefix = m.group(1)
        names = [n.strip() for n in m.group(2).split(",") if n.strip()]
        paths = [prefix[:-2] if n == "self" else prefix + n.split(" as ")[0].strip() for n in names]
        return " ".join(paths)

    while True:
        text, n = GROUP.subn(one, text)
        if n == 0:
            return text


REEXPORT = re.compile(r"pub(?:\([^)]*\))?\s+use\s+([\w:]+?)(?:::\{([^}]*)\}|::(\w+))\s*;", re.S)
PATH = re.compile(r"\b((?:crate|super|self)(?:::\w+)*|\w+(?:::\w+)+)")


def reexports(files, texts):
    """(index module + name) -> the module path the name really lives in."""
    out = {}
    for mod, text in texts.items():
        for m in REEXPORT.finditer(text):
            prefix = m.group(1).split("::")
            names = [n.strip().split(" as ")[-1] for n in (m.group(2) or m.group(3)).split(",")]
            if prefix[0] == "crate":
                base = prefix[1:]
            elif prefix[0] == "self":
                base = list(mod) + prefix[1:]
            else:
                base = list(mod) + prefix
            for n in filter(None, names):
                out[mod + (n,)] = base + [n]
    return out


def file_edges(files):
    texts = {mod: strip(open(path).read()) for mod, path in files.items()}
    reexp = reexports(files, texts)
    edges = {}
    for mod, text in texts.items():
        text = expand_groups(text)
        targets = set()
        for m in PATH.finditer(text):
            segs = m.group(1).split("::")
            if segs[0] == "crate":
                base, segs = [], segs[1:]
            elif segs[0] in ("super", "self"):
                base = list(mod)
                # `super::` inside the file's inline `mod tests` is the file itself
                in_test = segs[0] == "super" and "mod tests" in text[: m.start()]
                while segs and segs[0] in ("super", "self"):
                    if segs[0] == "super":
                        if in_test:
                            in_test = False
                        elif base:
                            base = base[:-1]
                    segs = segs[1:]
            elif mod + (segs[0],) in files:
                base = list(mod)
            else:
                continue
            full = base + segs
            for k in range(len(full), 0, -1):
                if tuple(full[:k]) in reexp:
                    full = reexp[tuple(full[:k])] + full[k:]
                    break
            while full and tuple(full) not in files:
                full = full[:-1]
            target = tuple(full)
            if target in files and target != mod and target[: len(mod)] != mod:
                targets.add(target)
        edges[mod] = targets
    return edges


def components(nodes, edges):
    """Tarjan's strongly connected components."""
    sys.setrecursionlimit(10000)
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def check_files():
    bad = 0
    for crate in sorted(os.listdir("crates")):
        src = os.path.join("crates", crate, "src")
        if not os.path.isdir(src):
            continue
        files = crate_files(src)
        for comp in components(list(files), file_edges(files)):
            if len(comp) > 1:
                bad += 1
                names = " <-> ".join("/".join(c) or "lib" for c in sorted(comp))
                print(f"VIOLATION: file circle in crates/{crate}: {names}")
    return bad


def main():
    print("crates, bottom to top (normal dependencies):")
    bad = check_crates()
    circles = check_files()
    print(f"{bad} upward crate dependencies, {circles} file circles")
    sys.exit(1 if bad or circles else 0)


if __name__ == "__main__":
    main()
