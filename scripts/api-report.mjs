#!/usr/bin/env node
// The public surface of every entry point in package.json "exports", as one API report each
// (api/bulwark.api.md, api/bulwark-http.api.md, ...), made by API Extractor from the declarations
// tsc emits with the build's settings (so `@internal` members are left out, as in the package).
//
//   node scripts/api-report.mjs            check: fails with a diff when a report would change
//   node scripts/api-report.mjs --update   rewrites the reports (commit them with the change)
//
// The check also fails when one name means two different things in two entry points: a user
// importing both would have to rename one.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import apiExtractor from '@microsoft/api-extractor';

const { CompilerState, Extractor, ExtractorConfig } = apiExtractor;
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const update = process.argv.includes('--update');
const reportFolder = join(root, 'api');
/** API Extractor's notices that a report changed or was written: said here as a diff, or not at all. */
const REPORT_NOTICES = new Set(['console-api-report-not-copied', 'console-api-report-copied', 'console-api-report-created']);
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const work = mkdtempSync(join(tmpdir(), 'bulwark-api-'));
try {
  process.exitCode = run();
} finally {
  rmSync(work, { recursive: true, force: true });
}

function run() {
  // Declarations only, with the build's tsconfig; the folder links the project's node_modules so
  // the peers' types (fastify, express, pg, undici) resolve from the emitted files.
  const dts = join(work, 'dts');
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const emit = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--emitDeclarationOnly', '--outDir', dts], { stdio: 'inherit' });
  if (emit.status !== 0) return 1;

  // One entry per subpath export: `.` → bulwark, `./http` → bulwark-http.
  const entries = Object.entries(manifest.exports)
    .filter(([subpath]) => subpath !== './package.json')
    .map(([subpath, target]) => ({
      specifier: subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`,
      report: subpath === '.' ? manifest.name : `${manifest.name}-${subpath.slice(2)}`,
      types: join(dts, relative('dist', target.types)),
    }));

  const tempReports = join(work, 'api');
  mkdirSync(tempReports);
  if (update) mkdirSync(reportFolder, { recursive: true });
  const configFor = (entry) => ExtractorConfig.prepare({
    configObjectFullPath: undefined,
    packageJsonFullPath: join(root, 'package.json'),
    configObject: {
      projectFolder: root,
      mainEntryPointFilePath: entry.types,
      compiler: {
        overrideTsconfig: {
          compilerOptions: {
            target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2023'], types: ['node'],
            strict: true, skipLibCheck: true,
          },
          files: entries.map((e) => e.types),
        },
      },
      apiReport: { enabled: true, reportFileName: entry.report, reportFolder, reportTempFolder: tempReports },
      docModel: { enabled: false },
      dtsRollup: { enabled: false },
      tsdocMetadata: { enabled: false },
      messages: {
        compilerMessageReporting: { default: { logLevel: 'warning' } },
        // Findings about the surface (a type it uses that no entry point exports, ...) are
        // printed and fail the run, rather than written into a report.
        extractorMessageReporting: {
          default: { logLevel: 'warning', addToApiReportFile: false },
          'ae-missing-release-tag': { logLevel: 'none' },
          'ae-undocumented': { logLevel: 'none' },
        },
        // Our doc comments are prose, not TSDoc.
        tsdocMessageReporting: { default: { logLevel: 'none' } },
      },
    },
  });

  const configs = entries.map(configFor);
  const { collisions, exported } = exportedNames(entries);
  // One TypeScript program for all entries: most of the time goes into building it.
  const compilerState = CompilerState.create(configs[0], { additionalEntryPoints: entries.map((e) => e.types) });
  const changed = [];
  let problems = 0;
  for (const [i, entry] of entries.entries()) {
    const result = Extractor.invoke(configs[i], {
      localBuild: update,
      compilerState,
      messageCallback: (message) => {
        message.handled = true;
        // The report-changed notices are ours to print (as a diff, below).
        if (REPORT_NOTICES.has(message.messageId)) return;
        // API Extractor sees one entry point at a time; `Event_2` is its name for our `Event`.
        const forgotten = message.messageId === 'ae-forgotten-export' && /"(.+?)(_\d+)?"/.exec(message.text)?.[1];
        if (forgotten && exported.has(forgotten)) return;
        if (message.logLevel === 'error' || message.logLevel === 'warning') {
          problems++;
          console.error(`${entry.specifier}: ${message.formatMessageWithLocation(`${dts}/`)}`);
        }
      },
    });
    // Not `succeeded`: that also counts the warnings judged harmless above.
    if (result.errorCount > 0) problems++;
    if (result.apiReportChanged) changed.push(entry);
  }

  // Reports of entry points that no longer exist.
  const expected = new Set(entries.map((e) => `${e.report}.api.md`));
  const stale = existsSync(reportFolder) ? readdirSync(reportFolder).filter((f) => f.endsWith('.api.md') && !expected.has(f)) : [];
  if (update) for (const file of stale) unlinkSync(join(reportFolder, file));

  for (const line of collisions) console.error(line);

  if (update) {
    for (const entry of changed) console.log(`updated api/${entry.report}.api.md`);
    for (const file of stale) console.log(`removed api/${file}`);
    if (changed.length === 0 && stale.length === 0) console.log('api reports: up to date');
    return problems + collisions.length > 0 ? 1 : 0;
  }
  for (const entry of changed) {
    const committed = join(reportFolder, `${entry.report}.api.md`);
    const current = join(tempReports, `${entry.report}.api.md`);
    console.error(`\nThe public surface of ${entry.specifier} changed:`);
    // git's diff needs no repository with --no-index, and exits 1 when the files differ.
    const diff = spawnSync('git', ['diff', '--no-index', '--no-color', '--', existsSync(committed) ? committed : '/dev/null', current], { encoding: 'utf8' });
    console.error(diff.stdout || diff.stderr);
  }
  for (const file of stale) console.error(`api/${file}: no entry point makes this report any more`);
  if (changed.length > 0 || stale.length > 0) {
    console.error('A change to the public surface shows as a diff in api/*.api.md: if it is meant, run `npm run api:update` and commit the reports.');
    return 1;
  }
  if (problems + collisions.length > 0) return 1;
  console.log(`api reports: ${entries.length} entry points match api/*.api.md`);
  return 0;
}

/**
 * Every name the entry points export, and the names two of them export for two different
 * declarations (one of them needs a name of its own).
 */
function exportedNames(entries) {
  const program = ts.createProgram(entries.map((e) => e.types), {
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'], skipLibCheck: true, noEmit: true,
  });
  const checker = program.getTypeChecker();
  /** name → declaration (file:name) → the entries exporting that name for it */
  const meanings = new Map();
  for (const entry of entries) {
    const module = checker.getSymbolAtLocation(program.getSourceFile(entry.types));
    for (const exported of checker.getExportsOfModule(module)) {
      const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const declaration = target.declarations?.[0];
      const where = declaration === undefined ? target.name : `${relative(work, declaration.getSourceFile().fileName)}#${target.name}`;
      if (!meanings.has(exported.name)) meanings.set(exported.name, new Map());
      const byDeclaration = meanings.get(exported.name);
      if (!byDeclaration.has(where)) byDeclaration.set(where, []);
      byDeclaration.get(where).push(entry.specifier);
    }
  }
  const collisions = [...meanings].filter(([, byDeclaration]) => byDeclaration.size > 1).map(([name, byDeclaration]) => (
    `${name} means different things: ${[...byDeclaration].map(([where, specifiers]) => `${where} in ${specifiers.join(', ')}`).join('; ')}`
  ));
  return { collisions, exported: new Set(meanings.keys()) };
}
