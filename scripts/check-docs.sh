#!/usr/bin/env bash
# Checks that the documentation names only things that exist:
# - every path ARCHITECTURE.md's code map names (each `### `dir/`` heading
#   sets where its entries live; an entry is found if some path under that
#   directory ends with it, or if it is a path from the repository's root);
# - every relative link of README.md, ARCHITECTURE.md, BENCHMARKS.md and
#   docs/*.md points to a file that exists;
# - every option in docs/cli.md's vswitchd table is one `vswitchd --help`
#   lists, and every option that lists is in the table (needs the release
#   build: target/release/vswitchd).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${VSWITCHD:-target/release/vswitchd}
[[ -x $bin ]] || { echo "check-docs: $bin is not built (cargo build --release)" >&2; exit 1; }
"$bin" --help >/dev/null
python3 - "$bin" <<'PY'
import os, re, subprocess, sys
errors = []

text = open("ARCHITECTURE.md").read()
start = text.index("\n## Code map")
end = text.index("\n## ", start + 1)
base, checked = ".", 0
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
        if tok in files:
            continue
        under = [f for f in files if f.startswith(base + "/")]
        if not any(f == f"{base}/{tok}" or f.endswith("/" + tok) for f in under):
            errors.append(f"ARCHITECTURE.md's code map names {base}/{tok}, which does not exist")

docs = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"] + sorted(
    os.path.join("docs", f) for f in os.listdir("docs") if f.endswith(".md"))
links = 0
for doc in docs:
    infence = False
    for line in open(doc):
        if line.startswith("```"):
            infence = not infence
        if infence:
            continue
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            links += 1
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split("#")[0]))
            if not os.path.exists(path):
                errors.append(f"{doc} links to {target}, which does not exist")

helptext = subprocess.run([sys.argv[1], "--help"], capture_output=True, text=True).stdout
have = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", helptext, re.M)) - {"--help", "--version"}
table = set(re.findall(r"^\| `(--[a-z][a-z0-9-]*)`", open("docs/cli.md").read(), re.M))
for opt in sorted(table - have):
    errors.append(f"docs/cli.md documents vswitchd {opt}, which vswitchd --help does not list")
for opt in sorted(have - table):
    errors.append(f"vswitchd {opt} is missing from docs/cli.md's options table")

if errors:
    sys.exit("check-docs:\n  " + "\n  ".join(errors))
print(f"check-docs: {checked} code-map paths, {links} links and {len(table)} vswitchd options check out")
PY
