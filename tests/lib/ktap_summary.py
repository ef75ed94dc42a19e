#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
# ktap_summary.py - count leaf test results in KTAP files and meson test logs; print per-source lines and a total.
#
# usage: ktap_summary.py [--meson LABEL=testlog.json] [--ktap LABEL=FILE] [--lab LABEL=FILE] ...
# A lab skip counts as a failure (a skipped kernel test is a failed suite).  Nested KTAP (indented subtests) is
# counted at the leaves; a parent that failed with no failing leaf (crash, timeout, missing cases) adds one failure.
# Last line: "N passed, N failed[, N skipped]".  Exit 1 when anything failed.
import json
import re
import sys

RESULT = re.compile(r'^(\s*)(ok|not ok)\s+(\d+)\b\s*-?\s*([^#]*)(#\s*(.*))?$')
PLAN = re.compile(r'^(\s*)1\.\.(\d+)\s*$')


class Group:
    def __init__(self, indent):
        self.indent = indent
        self.items = []
        self.plan = None


class Result:
    def __init__(self, ok, skip, name, children):
        self.ok, self.skip, self.name, self.children = ok, skip, name, children


def parse(text):
    stack = [Group(0)]
    for line in text.splitlines():
        m = RESULT.match(line) or PLAN.match(line)
        if not m:
            continue
        ind = len(m.group(1).expandtabs())
        if ind > stack[-1].indent:
            stack.append(Group(ind))
        popped = None
        while len(stack) > 1 and ind < stack[-1].indent:
            popped = stack.pop()
        if m.re is PLAN:
            stack[-1].plan = int(m.group(2))
            continue
        directive = (m.group(6) or '').strip().upper()
        stack[-1].items.append(Result(m.group(2) == 'ok', directive.startswith('SKIP'),
                                      m.group(4).strip(), popped))
    orphans = stack[1:]
    return stack[0], orphans


def count_group(g, fails):
    p = f = s = 0
    for r in g.items:
        a, b, c = count_result(r, fails)
        p, f, s = p + a, f + b, s + c
    if g.plan is not None and len(g.items) < g.plan:
        missing = g.plan - len(g.items)
        fails.append(f'{missing} planned case(s) never reported')
        f += missing
    return p, f, s


def count_result(r, fails):
    if r.children is None or not r.children.items:
        if not r.ok:
            fails.append(r.name)
            return 0, 1, 0
        return (0, 0, 1) if r.skip else (1, 0, 0)
    p, f, s = count_group(r.children, fails)
    if not r.ok and f == 0:
        fails.append(r.name + ' (failed outside its cases)')
        f += 1
    return p, f, s


def count_text(text, fails):
    root, orphans = parse(text)
    p, f, s = count_group(root, fails)
    for g in orphans:
        a, b, c = count_group(g, fails)
        fails.append('output ended inside a nested test')
        p, f, s = p + a, f + b + 1, s + c
    if not root.items and not orphans:
        fails.append('no test results at all')
        f += 1
    return p, f, s


def meson_to_ktap(path):
    out = ['TAP version 13']
    entries = [json.loads(l) for l in open(path) if l.strip()]
    out.append(f'1..{len(entries)}')
    for i, e in enumerate(entries, 1):
        for l in (e.get('stdout') or '').splitlines():
            out.append('  ' + l)
        res = e.get('result', 'FAIL')
        if res in ('OK', 'EXPECTEDFAIL'):
            out.append(f'ok {i} {e["name"]}')
        elif res == 'SKIP':
            out.append(f'ok {i} {e["name"]} # SKIP')
        else:
            out.append(f'not ok {i} {e["name"]} # {res}')
    return '\n'.join(out)


def main(argv):
    tp = tf = ts = 0
    i = 0
    while i < len(argv):
        kind, spec = argv[i], argv[i + 1]
        i += 2
        label, _, path = spec.partition('=')
        fails = []
        try:
            text = meson_to_ktap(path) if kind == '--meson' else open(path).read()
        except OSError as e:
            text = ''
            fails.append(f'cannot read {path}: {e.strerror}')
        p, f, s = count_text(text, fails)
        if kind == '--lab' and s:
            fails.append(f'{s} skipped lab case(s): a skipped kernel test fails the suite')
            f, s = f + s, 0
        tp, tf, ts = tp + p, tf + f, ts + s
        line = f'  {label}: {p} passed, {f} failed' + (f', {s} skipped' if s else '')
        print(line)
        for why in fails[:20]:
            print(f'      FAIL: {why}')
    print(f'{tp} passed, {tf} failed' + (f', {ts} skipped' if ts else ''))
    return 1 if tf else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
