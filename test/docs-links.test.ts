/**
 * Every relative link in README.md and docs/ points at a file that exists, so a rename cannot
 * leave a dead link behind. Web links and same-page anchors are not checked (no network here).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function markdownFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return markdownFiles(path);
    return name.endsWith('.md') ? [path] : [];
  });
}

/** Link targets of `[text](target)` and `[label]: target`, outside code (where brackets are code). */
function relativeLinks(markdown: string): string[] {
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '').replace(/`[^`\n]*`/g, '');
  const targets = [
    ...[...prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!),
    ...[...prose.matchAll(/^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm)].map((m) => m[1]!),
  ];
  return targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith('#'));
}

test('the link finder skips code, web links and anchors, and keeps relative paths', () => {
  const sample = [
    'See [the guide](docs/a.md#part), [web](https://example.com), [here](#top), [ref].',
    '`[not](a-link.md)` and',
    '```ts',
    'const x = list[0](arg.md);',
    '```',
    '[ref]: ../b.md',
  ].join('\n');
  assert.deepEqual(relativeLinks(sample), ['docs/a.md#part', '../b.md']);
});

/** Repository paths named in code spans (`src/core/policy.ts`), which rot on a rename as links do. */
function namedPaths(markdown: string): string[] {
  return [...markdown.matchAll(/`((?:src|test|bench|examples|sql|scripts|docs)\/[^`\s<>*{}]+)`/g)].map((m) => m[1]!);
}

test('every repository path named in a code span of README.md and docs/ exists', () => {
  const files = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))];
  const named = files.flatMap((file) => namedPaths(readFileSync(file, 'utf8')).map((path) => ({ file, path })));
  assert.ok(named.length > 10, `only ${named.length} paths found: the finder is broken`);
  const missing = named.filter(({ path }) => !existsSync(join(root, path.replace(/[.,:;]+$/, ''))));
  assert.deepEqual(missing.map(({ file, path }) => `${relative(root, file)} → ${path}`), [], 'paths that do not exist');
});

test('every relative link in README.md and docs/ resolves to an existing file', () => {
  const files = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))];
  const dead: string[] = [];
  let checked = 0;
  for (const file of files) {
    for (const target of relativeLinks(readFileSync(file, 'utf8'))) {
      checked++;
      const path = decodeURIComponent(target.replace(/[#?].*$/, ''));
      if (!existsSync(resolve(dirname(file), path))) dead.push(`${relative(root, file)} → ${target}`);
    }
  }
  assert.ok(checked > 50, `only ${checked} links found: the finder is broken`);
  assert.deepEqual(dead, [], 'dead relative links');
});
