#!/usr/bin/env python3
"""Module dependency cycles inside crates: an edge x -> y when a file of top-level
module x names `crate::y` (in a `use` or a path; comments skipped). Prints each
crate's cycles (strongly connected components of more than one module); exits 1
when there is one. Usage: scripts/module_cycles.py [crate dir ...] (default: every
crate under crates/)."""
import os, re, sys

REF = re.compile(r'\bcrate::(?:\{\s*)?([a-z_][a-z0-9_]*)')
GROUP = re.compile(r'\bcrate::\{([^}]*)\}', re.S)


def module_of(src, path):
    rel = os.path.relpath(path, src).split(os.sep)
    name = rel[0][:-3] if rel[0].endswith('.rs') else rel[0]
    return None if name in ('lib', 'main') else name


def edges(src):
    graph = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            path = os.path.join(dirpath, f)
            m = module_of(src, path)
            if m is None:
                continue
            text = '\n'.join(l.split('//')[0] for l in open(path, encoding='utf-8'))
            targets = set(REF.findall(text))
            for group in GROUP.findall(text):
                targets |= {t.split('::')[0].strip() for t in group.split(',') if t.strip()}
            graph.setdefault(m, set()).update(t for t in targets if t != m)
    return graph


def cycles(graph):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


crates = sys.argv[1:] or sorted(os.path.join('crates', c) for c in os.listdir('crates'))
found = False
for crate in crates:
    graph = edges(os.path.join(crate, 'src'))
    for comp in cycles(graph):
        found = True
        inner = [f'{a} -> {b}' for a in comp for b in sorted(graph[a]) if b in comp]
        print(f'{os.path.basename(crate)}: cycle {{{", ".join(comp)}}}: {"; ".join(inner)}')
if not found:
    print('no module cycle')
sys.exit(1 if found else 0)
