#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
# trace_check.py - check sluice-trace's output (latency JSON, snoop lines, SVG plots) against what a driver issued.
"""usage:
  trace_check.py hist JSON_FILE EXPECT...
      EXPECT is DATAPLANE:DISK:QUEUE:OP=COUNT ('_' for a field not split on,
      'user' disks as PID:0xBLK); the histograms of every dataplane named must be
      exactly these, summed over the file's reports (one JSON object per line).
      Checks bucket sums, 0 < min <= max < 20 s, buckets against min/max,
      the per-dataplane request totals and that nothing was lost.
  trace_check.py snoop OUT_FILE [--json] LIST...
      every request of the LIST files (written by trace_kdriver / trace_udriver
      -o) appears exactly once in the snoop output, and nothing else does.
  trace_check.py svg SVG_FILE JSON_FILE
      the SVG parses, and each histogram of the (single) JSON report has a bar
      per non-empty bucket, with its count.
"""
import json
import sys
import xml.etree.ElementTree as ET

MAX_NS = 20 * 10**9
SVG_NS = '{http://www.w3.org/2000/svg}'


def fail(msg):
    print('trace_check: ' + msg)
    sys.exit(1)


def slot_of(v):
    s = 0
    while v:
        v >>= 1
        s += 1
    return min(s, 31)


def load_reports(path):
    reports = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('{'):
                reports.append(json.loads(line))
    if not reports:
        fail('%s: no JSON report' % path)
    return reports


def hist_key(h):
    def field(name):
        if name not in h:
            return '_'
        return '-' if h[name] is None else str(h[name])
    return ':'.join([h['dataplane'], field('disk'), field('queue'), field('op')])


def check_hist(h, unit):
    div = 1000 if unit == 'usecs' else 1000000
    total = sum(b['count'] for b in h['buckets'])
    if total != h['count']:
        fail('%s: buckets sum to %d, count is %d' % (hist_key(h), total, h['count']))
    if not 0 < h['min_ns'] <= h['max_ns'] < MAX_NS:
        fail('%s: latencies not in (0, 20 s]: min %d max %d ns' % (hist_key(h), h['min_ns'], h['max_ns']))
    lo, hi = h['buckets'][0], h['buckets'][-1]
    if slot_of(h['min_ns'] // div) != slot_of(lo['lo']) or slot_of(h['max_ns'] // div) != slot_of(hi['lo']):
        fail('%s: min %d / max %d ns not in the first / last bucket %s %s'
             % (hist_key(h), h['min_ns'], h['max_ns'], lo, hi))
    for b in h['buckets']:
        if b['count'] <= 0 or (b['hi'] is not None and not b['lo'] <= b['hi']):
            fail('%s: bad bucket %s' % (hist_key(h), b))


def cmd_hist(path, expects):
    reports = load_reports(path)
    want = {}
    for e in expects:
        k, _, n = e.rpartition('=')
        want[k] = int(n)
    planes = {k.split(':')[0] for k in want}
    got = {}
    totals = {}
    for r in reports:
        for lost, n in r['lost'].items():
            if n:
                fail('lost %s: %d' % (lost, n))
        for dp, st in r['dataplanes'].items():
            if dp in planes and not st['traced']:
                fail('dataplane %s not traced: %s' % (dp, st.get('reason')))
            if st.get('traced'):
                totals[dp] = totals.get(dp, 0) + st['requests']
        for h in r['histograms']:
            check_hist(h, r['unit'])
            if h['dataplane'] in planes:
                got[hist_key(h)] = got.get(hist_key(h), 0) + h['count']
    if got != want:
        fail('histograms %s, expected %s' % (sorted(got.items()), sorted(want.items())))
    for dp in planes:
        n = sum(v for k, v in want.items() if k.split(':')[0] == dp)
        if totals.get(dp) != n:
            fail('dataplane %s: %s requests reported, expected %d' % (dp, totals.get(dp), n))
    print('trace_check: %d reports, histograms as expected: %s' % (len(reports), ' '.join(sorted(expects))))


def read_lists(paths):
    want = []
    for p in paths:
        label = None
        with open(p) as f:
            for line in f:
                w = line.split()
                if not w:
                    continue
                if w[0] == 'blk':
                    label = '%s:0x%x' % (w[1], int(w[2], 16))
                elif label:		# user: OP OFFSET BYTES
                    want.append((label, '-', w[0], str(int(w[1]) // 512), w[2], 'user'))
                else:			# kernel: DISK QUEUE OP SECTOR BYTES
                    want.append((w[0], w[1], w[2], w[3], w[4], 'kernel'))
    return want


def cmd_snoop(path, args):
    use_json = '--json' in args
    lists = [a for a in args if a != '--json']
    want = sorted(read_lists(lists))
    got = []
    with open(path) as f:
        for line in f:
            if use_json:
                if not line.startswith('{'):
                    continue
                e = json.loads(line)
                q = '-' if e['queue'] is None else str(e['queue'])
                lat, fb, st = e['latency_ns'] / 1000.0, e['fallback'], e['status']
                got.append((e['disk'], q, e['op'], str(e['sector']), str(e['bytes']), e['dataplane']))
                if e['dataplane'] == 'user' and e['offset'] // 512 != e['sector']:
                    fail('offset %d and sector %d disagree' % (e['offset'], e['sector']))
            else:
                w = line.split()
                if len(w) != 10 or w[0] == 'TIME(s)':
                    continue
                try:
                    float(w[0])
                except ValueError:
                    continue
                lat, fb, st = float(w[6]), w[8], w[9]
                got.append((w[1], w[2], w[3], w[4], w[5], w[7]))
            if not 0 < lat < MAX_NS / 1000:
                fail('latency %s us out of range: %s' % (lat, line.strip()))
            if fb not in (None, '-') or st != 'ok':
                fail('unexpected fallback/status: %s' % line.strip())
    got.sort()
    if got != want:
        extra = [g for g in got if g not in want]
        missing = [w for w in want if w not in got]
        fail('%d lines, %d requests issued; unexpected %s; missing %s' % (len(got), len(want), extra[:5], missing[:5]))
    print('trace_check: %d snoop lines match the requests issued' % len(got))


def cmd_svg(svg_path, json_path):
    report = load_reports(json_path)[-1]
    try:
        root = ET.parse(svg_path).getroot()
    except ET.ParseError as e:
        fail('%s is not well-formed XML: %s' % (svg_path, e))
    if root.tag != SVG_NS + 'svg':
        fail('root element is %s' % root.tag)
    texts = ' '.join((t.text or '') for t in root.iter(SVG_NS + 'text'))
    if 'requests' not in texts or 'latency, ' not in texts:
        fail('axis labels missing')
    groups = [g for g in root.iter(SVG_NS + 'g') if g.get('class') == 'hist']
    if len(groups) != len(report['histograms']):
        fail('%d panels for %d histograms' % (len(groups), len(report['histograms'])))
    for i, h in enumerate(report['histograms']):
        g = [g for g in groups if g.get('id') == 'hist-%d' % i][0]
        bars = {int(r.get('data-lo')): int(r.get('data-count'))
                for r in g.iter(SVG_NS + 'rect') if r.get('class') == 'bar'}
        nbars = len([r for r in g.iter(SVG_NS + 'rect') if r.get('class') == 'bar'])
        buckets = {b['lo']: b['count'] for b in h['buckets']}
        if nbars != len(buckets) or bars != buckets:
            fail('panel %d (%s): bars %s, buckets %s' % (i, hist_key(h), bars, buckets))
        for r in g.iter(SVG_NS + 'rect'):
            if r.get('class') == 'bar' and not float(r.get('height')) > 0:
                fail('panel %d: an empty bar' % i)
    print('trace_check: %d panels, a bar per non-empty bucket' % len(groups))


def main():
    if len(sys.argv) < 3:
        fail(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == 'hist':
        cmd_hist(args[0], args[1:])
    elif cmd == 'snoop':
        cmd_snoop(args[0], args[1:])
    elif cmd == 'svg' and len(args) == 2:
        cmd_svg(args[0], args[1])
    else:
        fail(__doc__)


if __name__ == '__main__':
    main()
