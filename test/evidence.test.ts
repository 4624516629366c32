/**
 * docs/evidence.md lists the claims of the resilience texts with the command that reproduces each
 * one. This test keeps that page honest: every test file a row names exists and contains the test
 * name given (in the file itself or in a shared suite it imports), every row has a verdict, no row
 * is "reproduced" without a command, and the counts at the top match the rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const EVIDENCE_HEADER = ['Claim', 'Source', 'Reproduce', 'Measured', 'Verdict'];
const COUNTS_HEADER = ['Verdict', 'Rows'];
const VERDICTS = ['reproduced', 'reproduced as corrected', 'pending'] as const;
type Verdict = (typeof VERDICTS)[number];

/** Cells of a table row; `\|` is a pipe inside a cell, not a separator. */
function cells(line: string): string[] {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

/** Rows of every table whose header is exactly `header`, with their line numbers. */
function tables(markdown: string, header: readonly string[]): Array<{ line: number; cells: string[] }> {
  const lines = markdown.split('\n');
  const rows: Array<{ line: number; cells: string[] }> = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.startsWith('|') || cells(lines[i]!).join('\u0000') !== header.join('\u0000')) continue;
    for (let j = i + 2; j < lines.length && lines[j]!.startsWith('|'); j++) rows.push({ line: j + 1, cells: cells(lines[j]!) });
  }
  return rows;
}

/** Code spans in order (CommonMark: a run of n backticks closes a span opened by n). */
function codeSpans(text: string): string[] {
  return [...text.matchAll(/(`+)([\s\S]*?[^`])\1(?!`)/g)].map((m) => {
    const body = m[2]!;
    return /^ .* $/.test(body) && body.trim() !== '' ? body.slice(1, -1) : body;
  });
}

function verdictOf(cell: string): Verdict | undefined {
  if (cell.startsWith('reproduced as corrected: ')) return 'reproduced as corrected';
  if (/^reproduced(\s|$|;)/.test(cell)) return 'reproduced';
  if (cell.startsWith('pending: ')) return 'pending';
  return undefined;
}

/** A test file and the modules it imports by relative path (shared suites define tests there). */
function sourcesOf(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const imported = [...text.matchAll(/from\s+'(\.{1,2}\/[^']+)'/g)]
    .map((m) => join(dirname(file), m[1]!.replace(/\.js$/, '.ts')))
    .filter((path) => existsSync(join(root, path)));
  return [text, ...imported.map((path) => readFileSync(join(root, path), 'utf8'))];
}

/** The test name as it can appear in source: as is, or with its quotes escaped. */
function appearsIn(name: string, sources: string[]): boolean {
  const spellings = [name, name.replace(/'/g, "\\'"), name.replace(/"/g, '\\"')];
  return sources.some((source) => spellings.some((s) => source.includes(s)));
}

/** Everything wrong with an evidence page; empty when it is consistent. */
function evidenceProblems(markdown: string, fileExists = (f: string) => existsSync(join(root, f)), sourcesOfFile = sourcesOf): string[] {
  const problems: string[] = [];
  const rows = tables(markdown, EVIDENCE_HEADER);
  if (rows.length === 0) problems.push('no evidence table found');
  const counted = new Map<Verdict, number>(VERDICTS.map((v) => [v, 0]));
  for (const { line, cells: row } of rows) {
    if (row.length !== EVIDENCE_HEADER.length) { problems.push(`line ${line}: ${row.length} cells, expected ${EVIDENCE_HEADER.length}`); continue; }
    const [claim, , reproduce, , verdictCell] = row as [string, string, string, string, string];
    if (claim === '') problems.push(`line ${line}: no claim`);
    const verdict = verdictOf(verdictCell);
    if (verdict === undefined) problems.push(`line ${line}: no verdict (reproduced / reproduced as corrected: … / pending: …)`);
    else counted.set(verdict, counted.get(verdict)! + 1);
    let file: string | undefined;
    let commands = 0;
    for (const span of codeSpans(reproduce)) {
      const run = /^node scripts\/test\.mjs (\S+\.test\.ts)$/.exec(span);
      if (run) {
        commands++;
        file = run[1]!;
        if (!fileExists(file)) { problems.push(`line ${line}: ${file} does not exist`); file = undefined; }
        continue;
      }
      if (span.startsWith('npm run bench -- ')) { commands++; file = undefined; continue; }
      if (file === undefined) continue; // a bench case name, or a name after a missing file (reported)
      if (!appearsIn(span, sourcesOfFile(file))) problems.push(`line ${line}: ${file} has no test named "${span}"`);
    }
    if (verdict !== undefined && verdict !== 'pending' && commands === 0) problems.push(`line ${line}: ${verdict} without a command`);
  }
  const stated = new Map(tables(markdown, COUNTS_HEADER).map(({ cells: [k, n] }) => [k, Number(n)]));
  for (const verdict of VERDICTS) {
    if (stated.get(verdict) !== counted.get(verdict)) problems.push(`counts: ${verdict} is stated as ${stated.get(verdict)}, the rows say ${counted.get(verdict)}`);
  }
  if (stated.get('total') !== rows.length) problems.push(`counts: total is stated as ${stated.get('total')}, the page has ${rows.length} rows`);
  return problems;
}

test('docs/evidence.md: every named test exists, every row has a verdict, no reproduced row lacks a command, counts match', () => {
  const markdown = readFileSync(join(root, 'docs/evidence.md'), 'utf8');
  assert.deepEqual(evidenceProblems(markdown), []);
  assert.ok(tables(markdown, EVIDENCE_HEADER).length >= 100, 'one row per claim');
});

test('the checker reports a wrong test name, a missing file, a missing verdict, a command-less reproduced row and wrong counts', () => {
  const files: Record<string, string> = { 'src/a.test.ts': "test('adds `two` numbers', () => {});\ntest('it\\'s quoted', () => {});" };
  const page = (rows: string[], counts: [number, number, number, number]) => [
    '| Verdict | Rows |', '|---|---|',
    `| reproduced | ${counts[0]} |`, `| reproduced as corrected | ${counts[1]} |`, `| pending | ${counts[2]} |`, `| total | ${counts[3]} |`,
    '', '| Claim | Source | Reproduce | Measured | Verdict |', '|---|---|---|---|---|', ...rows,
  ].join('\n');
  const check = (markdown: string) => evidenceProblems(markdown, (f) => f in files, (f) => [files[f]!]);

  const good = page([
    "| adds | — | `node scripts/test.mjs src/a.test.ts`: `` adds `two` numbers ``; `it's quoted` | 2 | reproduced |",
    '| benches | — | `npm run bench -- tail` (case `hedge-p99`) | 1 ms | reproduced as corrected: faster |',
    '| later | — | — | — | pending: the simulator |',
  ], [1, 1, 1, 3]);
  assert.deepEqual(check(good), []);

  const wrongName = good.replace("`it's quoted`", "`it's quotes`");
  assert.deepEqual(check(wrongName), ['line 10: src/a.test.ts has no test named "it\'s quotes"']);

  const missingFile = good.replace('src/a.test.ts`', 'src/b.test.ts`');
  assert.deepEqual(check(missingFile), ['line 10: src/b.test.ts does not exist']);

  const noVerdict = good.replace('| pending: the simulator |', '| maybe |');
  assert.deepEqual(check(noVerdict), [
    'line 12: no verdict (reproduced / reproduced as corrected: … / pending: …)',
    'counts: pending is stated as 1, the rows say 0',
  ]);

  const noCommand = good.replace('`npm run bench -- tail` (case `hedge-p99`)', 'see the benchmarks');
  assert.deepEqual(check(noCommand), ['line 11: reproduced as corrected without a command']);

  const wrongCounts = good.replace('| total | 3 |', '| total | 4 |');
  assert.deepEqual(check(wrongCounts), ['counts: total is stated as 4, the page has 3 rows']);
});
