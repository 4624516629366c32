#!/usr/bin/env node
// Builds the published dist/ from an empty folder. tsc never deletes what an older build left
// behind (the output of a removed module, or source maps from before they were turned off), and
// the package's `files: ["dist"]` would ship all of it.
// Usage: node scripts/build.mjs [--outDir <dir>]   (default: dist next to this repository's package.json)
import { rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const at = args.indexOf('--outDir');
if (at >= 0 && !args[at + 1]) {
  console.error('build: --outDir needs a folder');
  process.exit(2);
}
const outDir = resolve(at >= 0 ? args[at + 1] : join(root, 'dist'));
// Emptying the folder is the point, so refuse one that holds the repository itself.
const rootFromOut = relative(outDir, root);
if (!rootFromOut.startsWith('..') && !isAbsolute(rootFromOut)) {
  console.error(`build: refusing to empty ${outDir}, which holds the repository; give --outDir a folder of its own`);
  process.exit(2);
}
rmSync(outDir, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const result = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir], { stdio: 'inherit' });
process.exit(result.status ?? 1);
