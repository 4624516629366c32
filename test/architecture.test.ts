// The layering of docs/adr/0001-architecture.md, enforced: dependency-cruiser reads every import
// in src, type-only ones included, and applies the rules in .dependency-cruiser.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { cruise, format, getAvailableTranspilers, type ICruiseResult, type IModule } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';

const root = fileURLToPath(new URL('..', import.meta.url));
const configFile = join(root, '.dependency-cruiser.mjs');

interface Layering {
  NOT_SHIPPED: string[];
  THIRD_PARTY: Record<string, string[]>;
  MAY_IMPORT: Record<string, string[]>;
}
const layering = (await import(pathToFileURL(configFile).href)) as Layering;

const options = await extractDepcruiseOptions(configFile);
const { output } = await cruise(['src'], { ...options, baseDir: root }, {}, { tsConfig: extractTSConfig(join(root, 'tsconfig.json')) });
const result = output as ICruiseResult;

const shipped = (m: IModule): boolean => m.source.startsWith('src/') && !layering.NOT_SHIPPED.some((p) => new RegExp(p).test(m.source));
const importsOf = (m: IModule): string[] => m.dependencies.map((d) => d.resolved);
// A package resolves into node_modules, which may be a link to another checkout's (then the path climbs out first).
const isPackage = (resolved: string, name: string): boolean => new RegExp(`(^|/)node_modules/(@types/)?${name}/`).test(resolved);

test('src follows the layering rules: no violations', async () => {
  if (result.summary.violations.length > 0) {
    const report = await format(result, { outputType: 'err' });
    assert.fail(`${result.summary.violations.length} architecture violations:\n${String(report.output)}`);
  }
});

test('the check sees what it checks: TypeScript sources, type-only imports and packages', () => {
  // Without a TypeScript it can load, dependency-cruiser skips .ts files silently.
  assert.equal(getAvailableTranspilers().find((t) => t.name === 'typescript')?.available, true);
  assert.ok(result.summary.totalCruised > 150, `only ${result.summary.totalCruised} modules cruised`);
  const dependencies = (from: string) => result.modules.find((m) => m.source === from)?.dependencies ?? [];
  assert.ok(dependencies('src/hedge/hedge.ts').some((d) => d.resolved === 'src/retry/classify.ts'), 'a value import between folders');
  assert.ok(
    dependencies('src/http/core/protection.ts').some((d) => d.resolved === 'src/http/core/request-context.ts' && d.dependencyTypes.includes('type-only')),
    'a type-only import',
  );
  assert.ok(dependencies('src/fetch/client.ts').some((d) => isPackage(d.resolved, 'undici')), 'a package import');
});

test('every allowance in the rules is still used (the rules say what is true, not what once was)', () => {
  const modules = result.modules.filter(shipped);
  for (const [folder, entries] of Object.entries(layering.MAY_IMPORT)) {
    const imports = modules.filter((m) => m.source.startsWith(`src/${folder}/`)).flatMap(importsOf);
    for (const entry of entries) {
      const target = `src/${entry}`;
      assert.ok(
        imports.some((i) => (entry.endsWith('/') ? i.startsWith(target) : i === target)),
        `MAY_IMPORT lets src/${folder} import ${target}, but nothing there does: remove the allowance`,
      );
    }
  }
  for (const [file, packages] of Object.entries(layering.THIRD_PARTY)) {
    const imports = importsOf(modules.find((m) => m.source === file) ?? assert.fail(`THIRD_PARTY lists ${file}, which does not exist`));
    for (const name of packages) {
      assert.ok(
        imports.some((i) => isPackage(i, name)),
        `THIRD_PARTY lets ${file} import ${name}, but it does not: remove the allowance`,
      );
    }
  }
});
