#!/usr/bin/env python3
"""Share of non-trivial lines common to repo-sqlite and repo-postgres same-named files.
Non-trivial: stripped line >= 16 chars, not a comment. Multiset intersection per pair."""
import os, sys, collections
root = sys.argv[1] if len(sys.argv) > 1 else '.'
a = os.path.join(root, 'crates/repo-sqlite/src'); b = os.path.join(root, 'crates/repo-postgres/src')
def lines(p):
    out = []
    for l in open(p, encoding='utf-8'):
        s = l.strip()
        if len(s) < 16 or s.startswith('//') or s.startswith('/*') or s.startswith('*'):
            continue
        out.append(s)
    return out
def files(d):
    r = {}
    for dp, _, fs in os.walk(d):
        for f in fs:
            if f.endswith('.rs'):
                p = os.path.join(dp, f); r[os.path.relpath(p, d)] = p
    return r
fa, fb = files(a), files(b)
tot_same = tot = 0
for name in sorted(set(fa) & set(fb)):
    la, lb = collections.Counter(lines(fa[name])), collections.Counter(lines(fb[name]))
    same = sum((la & lb).values()); n = sum(la.values()) + sum(lb.values())
    tot_same += 2 * same; tot += n
    print(f'{name:28} {same:4} common / {n:5} lines  {100*2*same/max(n,1):5.1f}%')
print(f'TOTAL {tot_same//2} common lines ({tot_same} of {tot} = {100*tot_same/max(tot,1):.1f}%)')
