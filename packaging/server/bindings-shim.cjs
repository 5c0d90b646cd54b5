// Stands in for the npm package `bindings` in the packaged server executable
// (scripts/package.ts): better-sqlite3 asks it for better_sqlite3.node, and a single executable
// cannot require() files, so the addon is loaded with process.dlopen from beside the executable
// (/usr/lib/rear-update/better_sqlite3.node in the packages).
/* global require, module */
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS, as `bindings` is
const { dirname, join } = require('node:path');

module.exports = function bindings(name) {
  const m = { exports: {} };
  process.dlopen(m, join(dirname(process.execPath), name.endsWith('.node') ? name : `${name}.node`));
  return m.exports;
};
