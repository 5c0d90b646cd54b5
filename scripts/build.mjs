// Bundles the CLI into one CommonJS file (dist/rear-update.cjs): the npm bin, the input
// of the one-file executable, and what the tests run (no TypeScript loader at run time).
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/rear-update.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  define: { __REAR_UPDATE_VERSION__: JSON.stringify(version) },
});
