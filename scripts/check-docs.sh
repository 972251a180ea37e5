#!/usr/bin/env bash
# Fails when ARCHITECTURE.md's code map names a file or directory that does
# not exist. Each `### `dir/`` heading of the code map sets where its
# entries live; an entry is found if some path under that directory ends
# with it (so `parse.rs` under the `stage/` entry is found too), or if it
# is a path from the repository's root.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 - ARCHITECTURE.md <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
start = text.index("\n## Code map")
end = text.index("\n## ", start + 1)
base, missing, checked = ".", [], 0
files = []
for root, dirs, names in os.walk("."):
    dirs[:] = [d for d in dirs if d not in ("target", ".git")]
    files += [os.path.join(root, n)[2:] for n in names]
    files += [os.path.join(root, d)[2:] + "/" for d in dirs]
for line in text[start:end].splitlines():
    m = re.match(r"### `([^`]+)/`", line)
    if m:
        base = m.group(1)
        continue
    for tok in line.split("`")[1::2]:
        if not re.fullmatch(r"[A-Za-z0-9_.-][A-Za-z0-9_./-]*(\.(rs|c|sh|md|toml|py)|/)", tok):
            continue
        checked += 1
        under = [f for f in files if f.startswith(base + "/") or base == "."]
        if tok in files:
            continue
        if not any(f == f"{base}/{tok}" or f.endswith("/" + tok) for f in under):
            missing.append(f"{base}/{tok}")
if missing:
    sys.exit("ARCHITECTURE.md names paths that do not exist: " + ", ".join(missing))
print(f"check-docs: the {checked} paths ARCHITECTURE.md's code map names exist")
PY
