#!/usr/bin/env python3
"""Check the training recipes in models/train/configs/ without training anything.

    python models/train/check_configs.py            # every configs/*.toml
    python models/train/check_configs.py FILE ...   # these

For each file it runs `train.py --config FILE --print-args` (a few seconds each: the
PyTorch import) and checks that train.py accepts it and prints the merged arguments as
JSON with an `out` folder. Then it checks the links between runs: every checkpoint a
recipe starts from (init, resume, init_segs, init_final_seg, stats_seg, frozen_seg) under
models/train/runs/ is the last.pt of another recipe's `out`, and the links have no cycle,
so the recipes can run in an order (reproduce.sh's). Last, that a config with an unknown
key or a value of the wrong type is refused, naming the key. Exit status 1 on any failure.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
TRAIN = os.path.join(HERE, "train.py")
LINKS = ("init", "resume", "init_segs", "init_final_seg", "stats_seg", "frozen_seg")
RUNS = "models/train/runs/"


def train_py(*argv):
    return subprocess.run([sys.executable, TRAIN, *argv], cwd=ROOT, capture_output=True, text=True)


def main():
    files = sys.argv[1:] or sorted(glob.glob(os.path.join(HERE, "configs", "*.toml")))
    if not files:
        print("no config files")
        return 1
    bad = 0
    merged = {}
    for f in files:
        rel = os.path.relpath(os.path.abspath(f), ROOT)
        p = train_py("--config", rel, "--print-args")
        try:
            a = json.loads(p.stdout) if p.returncode == 0 else None
        except json.JSONDecodeError:
            a = None
        if a is None or not a.get("out") or a.get("config") != rel:
            print(f"FAIL {rel}: exit {p.returncode}\n{p.stdout}{p.stderr}")
            bad += 1
            continue
        merged[rel] = a
        starts = ", ".join(f"{k} {a[k]}" for k in LINKS if a.get(k))
        print(f"ok   {rel}: --model {a['model']}, {a['steps']} steps, lr {a['lr']:g} -> {a['out']}"
              + (f" (from {starts})" if starts else ""))

    # links: a checkpoint under runs/ must be the output of another recipe (of those checked,
    # or of any other file in configs/, read for its `out`)
    outs = {}
    for f in sorted(glob.glob(os.path.join(HERE, "configs", "*.toml"))):
        with open(f, "rb") as fh:
            out = tomllib.load(fh).get("out")
        if out:
            outs[out.rstrip("/") + "/last.pt"] = os.path.relpath(f, ROOT)
    outs.update({a["out"].rstrip("/") + "/last.pt": rel for rel, a in merged.items()})
    deps = {}
    for rel, a in merged.items():
        deps[rel] = []
        for k in LINKS:
            v = a.get(k)
            if not v or not v.startswith(RUNS):
                continue
            if v not in outs:
                print(f"FAIL {rel}: {k} = {v} is no recipe's output (out + /last.pt)")
                bad += 1
            elif outs[v] == rel:
                print(f"FAIL {rel}: {k} = {v} is its own output")
                bad += 1
            else:
                deps[rel].append(outs[v])
    dup = {}
    for rel, a in merged.items():
        dup.setdefault(a["out"], []).append(rel)
    for out, rels in dup.items():
        if len(rels) > 1:
            print(f"FAIL {', '.join(rels)}: the same out {out}")
            bad += 1
    done, stack = set(), set()

    def visit(r):
        nonlocal bad
        if r in done:
            return
        if r in stack:
            print(f"FAIL {r}: its start links form a cycle")
            bad += 1
            return
        stack.add(r)
        for d in deps.get(r, []):
            visit(d)
        stack.discard(r)
        done.add(r)
    for r in deps:
        visit(r)

    # refusals
    with tempfile.TemporaryDirectory() as tmp:
        for text, key in (('out = "x"\nnatural_frac = 0.5\nno_such_option = 1\n', "no_such_option"),
                          ('out = "x"\nsteps = "many"\n', "steps"),
                          ('out = "x"\nmodel = "resnet"\n', "model")):
            path = os.path.join(tmp, "bad.toml")
            open(path, "w").write(text)
            p = train_py("--config", path, "--print-args")
            if p.returncode == 0 or f"'{key}'" not in p.stderr:
                print(f"FAIL a config with a bad '{key}' was not refused by name: exit {p.returncode}\n{p.stderr}")
                bad += 1
            else:
                print(f"ok   a bad '{key}' is refused: {p.stderr.strip().splitlines()[-1]}")
    print(f"{len(merged)} of {len(files)} configs parse; {'FAILED: ' + str(bad) if bad else 'all checks pass'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
