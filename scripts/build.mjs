// Bundles the CLI with esbuild into two CommonJS files:
//   dist/rear-update.cjs         the npm bin and what the tests run: every command, the server
//                                included (better-sqlite3 stays external: it is a native module
//                                loaded from node_modules).
//   dist/rear-update-rescue.cjs  the input of the one-file executable for rescue images: the
//                                same CLI without the server (src/server/main.ts is replaced by
//                                a stub), so it requires nothing but Node builtins.
//   dist/console-assets/         the web console's stylesheet and scripts, and the vendor
//                                scripts it serves (src/server/console/assets.ts finds them here).
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

const common = {
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
  // import.meta.dirname: where src/server/console/assets.ts finds dist/console-assets (CommonJS
  // has no import.meta; its __dirname is dist/).
  define: { __REAR_UPDATE_VERSION__: JSON.stringify(version), 'import.meta.dirname': '__dirname' },
};

const noServer = {
  name: 'no-server',
  setup(b) {
    b.onResolve({ filter: /server\/main\.ts$/ }, () => ({ path: resolve('src/cli/no-server.ts') }));
  },
};

await Promise.all([
  build({ ...common, outfile: 'dist/rear-update.cjs', external: ['better-sqlite3'] }),
  build({ ...common, outfile: 'dist/rear-update-rescue.cjs', plugins: [noServer] }),
]);

// The console's assets beside the bundle. The vendor allow-list is read from assets.ts itself
// (its VENDOR table), so the two cannot drift apart.
const assetsOut = 'dist/console-assets';
rmSync(assetsOut, { recursive: true, force: true });
mkdirSync(assetsOut, { recursive: true });
cpSync('src/server/console/assets', assetsOut, { recursive: true });
const vendorTable = /export const VENDOR[^{]*\{([^}]*)\}/.exec(readFileSync('src/server/console/assets.ts', 'utf8'));
if (!vendorTable) throw new Error('build: no VENDOR table in src/server/console/assets.ts');
for (const [, name, path] of vendorTable[1].matchAll(/'([\w.-]+)':\s*'([\w./@-]+)'/g)) copyFileSync(join('node_modules', path), join(assetsOut, name));
