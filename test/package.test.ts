/**
 * The published package as a user gets it: build into a temp folder, `npm pack` it, unpack the
 * tarball into a scratch project's node_modules, and load every entry point from there with
 * `import` and with `require`. Nothing here reads the repository's own src/ or dist/.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const rootManifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  name: string;
  scripts: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  peerDependencies: Record<string, string>;
};

let work = '';
/** Paths inside the tarball, relative to the package root (`package/` stripped). */
let packed: string[] = [];
/** The scratch project: `<scratch>/node_modules/bulwark` is the unpacked tarball. */
let scratch = '';
let installed = '';
const leftover = 'module-removed-since-an-older-build.js';

interface PackResult { filename: string; files: { path: string }[] }

function npmPack(cwd: string, args: string[]): PackResult {
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  return (JSON.parse(out) as PackResult[])[0]!;
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'bulwark-pack-'));
  const stage = join(work, 'stage');
  mkdirSync(stage);
  // What npm would take from the repository (its `files`, README, LICENSE), minus a possibly
  // stale dist/: that one is built fresh below.
  for (const { path } of npmPack(root, ['--dry-run']).files) {
    if (path.startsWith('dist/')) continue;
    mkdirSync(dirname(join(stage, path)), { recursive: true });
    cpSync(join(root, path), join(stage, path));
  }
  // What an older build may have left in dist/: the build must not ship it.
  mkdirSync(join(stage, 'dist'));
  writeFileSync(join(stage, 'dist', leftover), 'export const removed = true;\n');
  execFileSync(process.execPath, [join(root, 'scripts/build.mjs'), '--outDir', join(stage, 'dist')], { stdio: 'pipe' });
  const pack = npmPack(stage, ['--pack-destination', work]);
  packed = pack.files.map((f) => f.path);

  scratch = join(work, 'scratch');
  installed = join(scratch, 'node_modules', rootManifest.name);
  mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', join(work, pack.filename), '-C', installed, '--strip-components=1']);
  // The optional peers an entry imports (express, undici, better-sqlite3) are dev dependencies
  // here: link them in, as a user who picks that entry would have installed them.
  const modules = realpathSync(join(root, 'node_modules'));
  for (const peer of Object.keys(rootManifest.peerDependencies)) {
    if (existsSync(join(modules, peer))) symlinkSync(join(modules, peer), join(scratch, 'node_modules', peer), 'dir');
  }
});

after(() => { if (work) rmSync(work, { recursive: true, force: true }); });

test('the tarball holds LICENSE, README, package.json, dist and sql, and nothing else', () => {
  for (const required of ['LICENSE', 'README.md', 'package.json', 'dist/index.js', 'dist/index.d.ts']) {
    assert.ok(packed.includes(required), `${required} missing from the tarball`);
  }
  assert.ok(packed.some((p) => p.startsWith('sql/') && p.endsWith('.sql')), 'no sql/*.sql in the tarball');
  const strays = packed.filter((p) => !['LICENSE', 'README.md', 'package.json'].includes(p) && !p.startsWith('dist/') && !p.startsWith('sql/'));
  assert.deepEqual(strays, []);
  assert.deepEqual(packed.filter((p) => /\.test\.(js|d\.ts)$/.test(p)), [], 'test files in the tarball');
  assert.match(readFileSync(join(installed, 'LICENSE'), 'utf8'), /MIT License[\s\S]*Bulwark contributors/);
});

test('the build starts from an empty dist: what an older build left there is not packed', () => {
  assert.ok(packed.includes('dist/index.js'));
  assert.ok(!packed.includes(`dist/${leftover}`), `dist/${leftover} was packed`);
  // `npm run build`, and `npm pack` / `npm publish` through prepack, are that same build.
  assert.equal(rootManifest.scripts.build, 'node scripts/build.mjs');
  assert.equal(rootManifest.scripts.prepack, 'npm run build');
});

test('no source map or sourceMappingURL in the tarball points to a file the tarball lacks', () => {
  const files = new Set(packed);
  const dangling: string[] = [];
  for (const path of packed) {
    if (path.endsWith('.map')) {
      const map = JSON.parse(readFileSync(join(installed, path), 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const source of map.sources) {
        const target = posix.join(posix.dirname(path), map.sourceRoot ?? '', source);
        if (!files.has(target)) dangling.push(`${path} -> ${target}`);
      }
    } else if (path.endsWith('.js') || path.endsWith('.d.ts')) {
      const url = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(readFileSync(join(installed, path), 'utf8'))?.[1];
      if (url && !url.startsWith('data:') && !files.has(posix.join(posix.dirname(path), url))) dangling.push(`${path} -> ${url}`);
    }
  }
  assert.equal(dangling.length, 0, `${dangling.length} dangling, e.g. ${dangling.slice(0, 3).join(', ')}`);
});

/** The `exports` of the packed manifest, as [specifier, { condition: target }] for each entry. */
function entries(): [string, Record<string, string>][] {
  const manifest = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as typeof rootManifest;
  return Object.entries(manifest.exports)
    .filter(([subpath]) => subpath !== './package.json')
    .map(([subpath, target]) => [
      subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`,
      typeof target === 'string' ? { default: target } : target,
    ]);
}

test('every exports entry names files the tarball has, types first and a default condition', () => {
  const files = new Set(packed);
  for (const [specifier, conditions] of entries()) {
    const names = Object.keys(conditions);
    assert.equal(names[0], 'types', `${specifier}: types must come first`);
    assert.ok(names.includes('default'), `${specifier}: no default condition, so require() cannot resolve it`);
    for (const [condition, target] of Object.entries(conditions)) {
      assert.ok(files.has(posix.normalize(target)), `${specifier} ${condition}: ${target} is not in the tarball`);
    }
  }
});

const loads = new Map<string, Record<string, string[] | string>>();

/** Loads every entry in a child Node run from the scratch project; returns each one's export names or error. */
function loadAll(mode: 'import' | 'require'): Record<string, string[] | string> {
  if (!loads.has(mode)) loads.set(mode, loadAllNow(mode));
  return loads.get(mode)!;
}

function loadAllNow(mode: 'import' | 'require'): Record<string, string[] | string> {
  const load = mode === 'import' ? 'await import(s)' : 'require(s)';
  const script = `
    const out = {};
    for (const s of JSON.parse(process.argv[1])) {
      try { out[s] = Object.keys(${load}).sort(); } catch (e) { out[s] = String(e.code ?? '') + ' ' + e.message; }
    }
    console.log(JSON.stringify(out));`;
  const args = mode === 'import' ? ['--input-type=module', '-e', script] : ['--input-type=commonjs', '-e', script];
  const out = execFileSync(process.execPath, [...args, JSON.stringify(entries().map(([s]) => s))], { cwd: scratch, encoding: 'utf8', timeout: 30_000 });
  return JSON.parse(out) as Record<string, string[] | string>;
}

test('every entry loads with import from a project that installed the tarball', () => {
  const loaded = loadAll('import');
  for (const [specifier] of entries()) {
    const names = loaded[specifier];
    assert.ok(Array.isArray(names) && names.length > 0, `import('${specifier}'): ${String(names)}`);
  }
  const root = loaded[rootManifest.name] as string[];
  assert.ok(root.includes('pipeline') && root.includes('systemClock'));
  // Test tools are in bulwark/testing only, and the pipeline's fused-path hooks in no entry.
  for (const internal of ['VirtualClock', 'seededRandom', 'flushPromises', 'invokeOperation', 'NOT_FUSED', 'DeadlineQueue']) {
    assert.ok(!root.includes(internal), `${rootManifest.name} exports ${internal}`);
  }
  assert.deepEqual(loaded[`${rootManifest.name}/testing`], ['VirtualClock', 'flushPromises', 'idempotencyStoreContract', 'memoryHybridRemote', 'seededRandom']);
});

/** The static imports of an ES module in the tarball, relative ones resolved to tarball paths. */
function importsOf(path: string): string[] {
  const source = readFileSync(join(installed, path), 'utf8');
  return [...source.matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'/gm)].map(([, specifier]) => (
    specifier!.startsWith('.') ? posix.join(posix.dirname(path), specifier!) : specifier!
  ));
}

/** Every file an ES module in the tarball reaches through static imports, itself and packages included. */
function reachedFrom(start: string): Set<string> {
  const reached = new Set<string>();
  const pending = [start];
  while (pending.length > 0) {
    const path = pending.pop()!;
    if (reached.has(path)) continue;
    reached.add(path);
    if (path.startsWith('dist/')) pending.push(...importsOf(path));
  }
  return reached;
}

test('no entry but the testing one reaches the testing entry or a test runner', () => {
  const testingEntry = `${rootManifest.name}/testing`;
  for (const [specifier, conditions] of entries().filter(([s]) => s !== testingEntry)) {
    const reached = reachedFrom(posix.normalize(conditions.import!));
    for (const banned of ['dist/testing.js', 'dist/idempotency/contract.js', 'node:test']) assert.ok(!reached.has(banned), `${specifier} reaches ${banned}`);
  }
  const idempotency = reachedFrom('dist/idempotency.js');
  assert.ok(idempotency.has('dist/idempotency/stores/memory-store.js') && idempotency.has('node:crypto'), 'the walk follows imports');
  // Idempotency keys have an entry of their own: the core entry loads their error classes only.
  assert.ok(!reachedFrom('dist/index.js').has('dist/idempotency/engine.js'), `${rootManifest.name} reaches the idempotency engine`);
  // The testing entry itself loads node:test only when a contract is run without a runner.
  const testing = new Set<string>();
  for (const path of ['dist/testing.js', 'dist/idempotency/contract.js']) for (const specifier of importsOf(path)) testing.add(specifier);
  assert.ok(testing.has('dist/idempotency/contract.js') && !testing.has('node:test'), [...testing].join(', '));
});

test('every entry loads with require on a Node that can require ES modules, with the same exports', () => {
  assert.ok(process.features.require_module, `Node ${process.version} cannot require() ES modules (needs >= 20.19 or 22.12)`);
  const imported = loadAll('import');
  const required = loadAll('require');
  for (const [specifier] of entries()) {
    assert.ok(Array.isArray(required[specifier]), `require('${specifier}'): ${String(required[specifier])}`);
    // Node marks a required ES module that has a default export with `__esModule: true`, so
    // CommonJS interop (`.default`) finds it; that one extra key is Node's, not the package's.
    const names = (required[specifier] as string[]).filter((name) => name !== '__esModule');
    assert.deepEqual(names, imported[specifier], specifier);
  }
});

test('a store author runs the idempotency store contract from the installed package with node --test', () => {
  // The user's own test file, in the scratch project: the contract comes from `bulwark/testing`
  // and registers with node:test, which the published module loads only at that call.
  const file = join(scratch, 'my-store.test.mjs');
  writeFileSync(file, `
    import { memoryIdempotencyStore } from '${rootManifest.name}/idempotency';
    import { idempotencyStoreContract, VirtualClock } from '${rootManifest.name}/testing';
    idempotencyStoreContract('memory, installed', async () => {
      const clock = new VirtualClock(1_700_000_000_000);
      return { store: memoryIdempotencyStore({ clock }), clock, leaseMs: 30_000, elapse: (ms) => clock.advance(ms), close: async () => {} };
    });
  `);
  // Without our runner's NODE_TEST_CONTEXT, the child reports as a run of its own, not to this one.
  const { NODE_TEST_CONTEXT: _ours, ...env } = process.env;
  const run = spawnSync(process.execPath, ['--test', '--test-reporter=tap', file], { cwd: scratch, env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stdout + run.stderr);
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(run.stdout)?.[1]);
  assert.ok(count('pass') >= 15 && count('fail') === 0, run.stdout.slice(-400));
});
