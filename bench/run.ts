/**
 * `npm run bench -- <suite...> [--json] [--quick]`
 * Suites live in bench/suites/<name>.ts and export a default `Suite`. With no suite named,
 * every suite runs.
 */
import { parseArgs } from 'node:util';
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type { BenchRow, Suite } from './harness.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { json: { type: 'boolean', default: false }, quick: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h' } },
});

const dir = join(fileURLToPath(new URL('.', import.meta.url)), 'suites');
const available = readdirSync(dir).filter((f) => f.endsWith('.ts')).map((f) => f.slice(0, -3)).sort();

if (values.help) {
  console.log(`usage: npm run bench -- [${available.join('|')}] [--json] [--quick]`);
  process.exit(0);
}
const unknown = positionals.filter((p) => !available.includes(p));
if (unknown.length > 0) {
  console.error(`unknown suite(s): ${unknown.join(', ')}; available: ${available.join(', ')}`);
  process.exit(2);
}

for (const suite of positionals.length > 0 ? positionals : available) {
  const rows: BenchRow[] = [];
  const mod = (await import(pathToFileURL(join(dir, `${suite}.ts`)).href)) as { default: Suite };
  if (!values.json) console.error(`\n== ${suite} ==`);
  await mod.default({
    suite,
    json: values.json!,
    quick: values.quick!,
    report(row) {
      rows.push(row);
      if (values.json) console.log(JSON.stringify({ suite, ...row }));
      else console.error(`  ${row.case} / ${row.impl}: ${formatFields(row)}`);
    },
    log(message) {
      if (!values.json) console.error(`  … ${message}`);
    },
  });
  if (!values.json) printTable(suite, rows);
}

function formatFields(row: BenchRow): string {
  return Object.entries(row).filter(([k]) => k !== 'case' && k !== 'impl').map(([k, v]) => `${k}=${v}`).join(' ');
}

function printTable(suite: string, rows: BenchRow[]): void {
  const columns = ['case', 'impl', ...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => k !== 'case' && k !== 'impl')))];
  const cells = rows.map((r) => columns.map((c) => (r[c] === undefined ? '' : String(r[c]))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)));
  const line = (values: string[]) => values.map((v, i) => (i < 2 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  console.log(`\n${suite}`);
  console.log(line(columns));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of cells) console.log(line(row));
}
