#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""The literal blocks of the deployment guide, for the tests that check them.

Every literal block of the guide (a "::" paragraph and the indented lines
after it) must follow a comment that says how it is checked:

    .. checked: NAME        the tests use the block as file guide/NAME
    .. untested: REASON     the tests do not use it, for REASON

with nothing but blank lines in between.

Usage:
    guide.py extract GUIDE DIR      write each checked block to DIR/NAME
    guide.py check GUIDE FILE...    every block has a marker, every name
                                    is used by the FILEs as "guide/NAME",
                                    and they use no other name; prints
                                    what is wrong, exits 1 if anything is
"""
import os
import re
import sys

MARKER = re.compile(r'^\s*\.\. (checked|untested): *(.*)$')
DIRECTIVE = re.compile(r'^\s*\.\. [\w:-]+::')
NAME = re.compile(r'^[a-z0-9][a-z0-9-]*$')


def indent(line):
    return len(line) - len(line.lstrip(' '))


def blocks(path):
    """Yield (line number, kind, what, text) for each literal block of the
    guide at path; kind and what come from its marker, kind is None when
    it has none."""
    lines = [l.rstrip('\n').expandtabs(8) for l in open(path, encoding='utf-8')]
    marker = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            if marker:
                yield marker[0], 'stray', marker[2], None
            marker = (i + 1, m.group(1), m.group(2).strip())
            i += 1
            continue
        if not line.strip():
            i += 1
            continue
        if DIRECTIVE.match(line) and re.search(r'code-block|literalinclude|code::', line):
            yield i + 1, 'directive', line.strip(), None
        if line.rstrip().endswith('::') and not DIRECTIVE.match(line):
            start, base = i + 1, indent(line)
            i += 1
            body = []
            while i < len(lines) and (not lines[i].strip() or
                                      indent(lines[i]) > base):
                body.append(lines[i])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            cut = min(indent(l) for l in body if l.strip()) if body else 0
            text = '\n'.join(l[cut:] for l in body) + '\n'
            if marker:
                yield start, marker[1], marker[2], text
            else:
                yield start, None, None, text
            marker = None
            continue
        if marker:
            yield marker[0], 'stray', marker[2], None
            marker = None
        i += 1


def extract(guide, outdir):
    os.makedirs(outdir, exist_ok=True)
    for _, kind, what, text in blocks(guide):
        if kind == 'checked':
            with open(os.path.join(outdir, what), 'w', encoding='utf-8') as f:
                f.write(text)


def check(guide, files):
    errors = []
    names = {}
    for line, kind, what, text in blocks(guide):
        where = '%s:%d' % (guide, line)
        if kind is None:
            errors.append('%s: literal block without a checked: or untested: marker' % where)
        elif kind == 'stray':
            errors.append('%s: marker "%s" is not followed by a literal block' % (where, what))
        elif kind == 'directive':
            errors.append('%s: %s: use a "::" literal block' % (where, what))
        elif kind == 'untested' and not what:
            errors.append('%s: untested: gives no reason' % where)
        elif kind == 'checked':
            if not NAME.match(what):
                errors.append('%s: "%s" is not a snippet name' % (where, what))
            elif what in names:
                errors.append('%s: "%s" is checked twice (line %d)' % (where, what, names[what]))
            names[what] = line
    used = set()
    for path in files:
        used.update(re.findall(r'\bguide/([a-z0-9][a-z0-9-]*)', open(path, encoding='utf-8').read()))
    for name in sorted(set(names) - used):
        errors.append('%s:%d: "%s" is marked checked, but no test uses guide/%s' %
                      (guide, names[name], name, name))
    for name in sorted(used - set(names)):
        errors.append('the tests use guide/%s, which the guide does not have' % name)
    for e in errors:
        print(e)
    return 1 if errors else 0


def main(argv):
    if len(argv) == 4 and argv[1] == 'extract':
        extract(argv[2], argv[3])
        return 0
    if len(argv) >= 4 and argv[1] == 'check':
        return check(argv[2], argv[3:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
