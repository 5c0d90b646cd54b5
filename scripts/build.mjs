// Bundles the CLI with esbuild into two CommonJS files:
//   dist/rear-update.cjs         the npm bin and what the tests run: every command, the server
//                                included (better-sqlite3 stays external: it is a native module
//                                loaded from node_modules; pg, pure JavaScript, is bundled, and its
//                                optional native binding pg-native, which it loads only when asked
//                                for pg.native, stays external so that its absence breaks nothing).
//   dist/rear-update-rescue.cjs  the input of the one-file executable for rescue images: the
//                                same CLI without the server (src/server/main.ts is replaced by
//                                a stub), so it requires nothing but Node builtins.
//   dist/console-assets/         the web console's stylesheets and scripts
//                                (src/server/console/assets.ts finds them here).
import { cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { resolve } from 'node:path';
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
  build({ ...common, outfile: 'dist/rear-update.cjs', external: ['better-sqlite3', 'pg-native'] }),
  build({ ...common, outfile: 'dist/rear-update-rescue.cjs', plugins: [noServer] }),
]);

// The console's assets beside the bundle.
const assetsOut = 'dist/console-assets';
rmSync(assetsOut, { recursive: true, force: true });
mkdirSync(assetsOut, { recursive: true });
cpSync('src/server/console/assets', assetsOut, { recursive: true });
