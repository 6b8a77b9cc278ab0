"""Writes the inputs of benches/preload_suite.sh into DIR, the same bytes every time (a
seeded generator): words.txt (text for sort and perl), load.sql (a sqlite3 session),
templates.cpp (a translation unit for g++), json_work.py (a json round trip for CPython),
history.fi (a `git fast-import` stream: a history of text files edited commit by commit, for
git's log -p and repack), records.json (a JSON array of 50,000 records, for jq).
Usage: python3 make_inputs.py DIR [SCALE]"""

import random
import sys
from pathlib import Path

out = Path(sys.argv[1])
scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
out.mkdir(parents=True, exist_ok=True)
rng = random.Random(20261206)
n = lambda v: max(1, int(v * scale))

syllables = ["ka", "lo", "mi", "ne", "ru", "sta", "pol", "ide", "tra", "gen", "vor", "qui", "zed", "ba", "x"]
vocab = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 5))) for _ in range(50000)]

with open(out / "words.txt", "w") as f:
    for _ in range(n(600000)):
        f.write(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))) + "\n")

rows = n(300000)
(out / "load.sql").write_text(f"""
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v TEXT, n INTEGER);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {rows})
INSERT INTO t(k, v, n) SELECT hex(randomblob(8)), printf('%.*c', abs(random()) % 200, 'x'), abs(random()) % 1000 FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_n ON t(n);
SELECT n % 97, count(*), sum(length(v)), group_concat(substr(k, 1, 2), '') FROM t GROUP BY n % 97 ORDER BY 2 DESC LIMIT 3;
SELECT count(*) FROM t a JOIN t b ON a.n = b.n AND a.id < b.id WHERE a.id < {rows // 30};
UPDATE t SET v = v || k WHERE n < 500;
DELETE FROM t WHERE n % 3 = 0;
SELECT count(*), sum(length(v)) FROM t;
""")

# Many instantiations of standard templates: the compiler's own allocation pattern (trees,
# hash tables, GC pages) is what is measured.
lines = ["#include <bits/stdc++.h>", "namespace w {"]
for i in range(n(3)):
    lines.append(f"""
struct S{i} {{ int a; std::string s; bool operator<(const S{i} &o) const {{ return a < o.a; }} }};
std::map<std::string, std::vector<S{i}>> f{i}(const std::vector<std::string> &in) {{
  std::map<std::string, std::vector<S{i}>> m;
  std::unordered_map<std::string, int> seen;
  for (const auto &x : in) {{ m[x].push_back(S{i}{{(int)x.size() + {i}, x}}); ++seen[x]; }}
  for (auto &kv : m) std::sort(kv.second.begin(), kv.second.end());
  std::regex re("[a-z]+{i}");
  if (std::regex_match(in.empty() ? std::string() : in[0], re)) m.erase(m.begin());
  return m;
}}""")
lines.append("}")
(out / "templates.cpp").write_text("\n".join(lines) + "\n")

(out / "json_work.py").write_text(f"""
import json, random
rng = random.Random(7)
docs = []
for i in range({n(40000)}):
    docs.append({{"id": i, "name": "user%d" % rng.randrange(10**6), "tags": [str(rng.random()) for _ in range(rng.randrange(8))],
                 "nested": {{"a": list(range(rng.randrange(20))), "b": {{"c": "x" * rng.randrange(100)}}}}}})
for _ in range(4):
    text = json.dumps(docs)
    docs = json.loads(text)
    docs.sort(key=lambda d: d["name"])
print(len(text))
""")

# A project's history as git fast-import reads it: 300 text files of 20-400 lines, and
# commits that each edit 1-8 of them (lines inserted and deleted), so that `git log -p`
# diffs real edits and `git repack -f` searches deltas between versions.
def line():
    return " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 12)))

texts = [[line() for _ in range(rng.randint(20, 400))] for _ in range(300)]
with open(out / "history.fi", "wb") as f:
    for c in range(n(2000)):
        touched = set(range(len(texts))) if c == 0 else set()
        for _ in range(0 if c == 0 else rng.randint(1, 8)):
            k = rng.randrange(len(texts))
            touched.add(k)
            t = texts[k]
            for _ in range(rng.randint(1, 10)):
                i = rng.randrange(len(t) + 1)
                if rng.random() < 0.3 and t:
                    del t[min(i, len(t) - 1)]
                else:
                    t.insert(i, line())
        msg = f"edit {c}\n".encode()
        f.write(b"commit refs/heads/main\n")
        f.write(f"committer A U Thor <author@example.com> {1700000000 + 60 * c} +0000\n".encode())
        f.write(b"data %d\n%s" % (len(msg), msg))
        for k in sorted(touched):
            data = ("\n".join(texts[k]) + "\n").encode()
            f.write(f"M 100644 inline src{k % 16}/file{k}.txt\ndata {len(data)}\n".encode())
            f.write(data)

# A JSON array of records for jq (written last, so the inputs above keep their bytes): jq
# holds every value as a reference-counted jv in malloc'd memory, so its filter below
# allocates and frees a block for nearly every value it touches.
with open(out / "records.json", "w") as f:
    f.write("[")
    for i in range(n(50000)):
        tags = ",".join('"%s"' % rng.choice(vocab) for _ in range(rng.randint(1, 6)))
        nums = ",".join(str(rng.randrange(1000)) for _ in range(5))
        f.write("%s{\"id\":%d,\"name\":\"%s\",\"tags\":[%s],\"score\":%.3f,\"nested\":{\"a\":[%s],\"b\":{\"c\":\"%s\"}}}"
                % ("," if i else "", i, rng.choice(vocab), tags, rng.random() * 100, nums, "x" * rng.randrange(40)))
    f.write("]\n")
