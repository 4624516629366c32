#!/usr/bin/env node
// Runs every *.test.ts file with Node's own test runner (TypeScript loaded through tsx), with
// one fixed seed for property tests that give none (test/support/property-seed.ts).
// Usage: node scripts/test.mjs [--unit | --integration] [path-substring ...]
//   e.g. `node scripts/test.mjs breaker`, `node scripts/test.mjs --unit`
// Files that need Redis or PostgreSQL are named *.integration.test.ts: --unit leaves them out
// (it runs on a machine with neither server), --integration runs only them.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

const roots = ['src', 'test', 'examples', 'bench'];
const args = process.argv.slice(2);
const unit = args.includes('--unit');
const integration = args.includes('--integration');
if (unit && integration) {
  console.error('--unit and --integration exclude each other (give neither to run every test)');
  process.exit(1);
}
const filters = args.filter((a) => a !== '--unit' && a !== '--integration');
const isIntegration = (file) => file.endsWith('.integration.test.ts');
const inSuite = (file) => (unit ? !isIntegration(file) : !integration || isIntegration(file));

function walk(dir, out) {
  let entries;
  try { entries = readdirSync(dir); } catch { return out; }
  for (const name of entries) {
    if (name === 'node_modules' || name.startsWith('.')) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const files = roots.flatMap((r) => walk(r, []))
  .map((f) => relative('.', f))
  .filter(inSuite)
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();

if (files.length === 0) {
  console.error(`no test files match ${args.join(' ') || '(all)'}`);
  process.exit(1);
}

const concurrency = Math.max(2, availableParallelism());
const result = spawnSync(process.execPath, [
  '--import', 'tsx',
  '--import', new URL('../test/support/property-seed.ts', import.meta.url).href,
  '--test',
  '--test-reporter=spec',
  `--test-concurrency=${concurrency}`,
  '--test-timeout=120000',
  ...files,
], { stdio: 'inherit', env: { ...process.env, NODE_ENV: 'test' } });
process.exit(result.status ?? 1);
