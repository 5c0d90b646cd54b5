// The console's static files, served by the server itself (rescue networks are closed: no
// CDN). Every file in console/assets/ is /assets/<name>; from the built server
// (dist/rear-update.cjs) they live in dist/console-assets/, copied there by scripts/build.mjs.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { RuError } from '../../core/errors.ts';

const TYPES: Readonly<Record<string, string>> = {
  css: 'text/css; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  ico: 'image/x-icon',
  woff2: 'font/woff2',
  txt: 'text/plain; charset=utf-8',
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.([a-z0-9]+)$/;

/**
 * This module's directory from source (tsx); in the bundle, scripts/build.mjs defines
 * import.meta.dirname as __dirname, which is dist/.
 */
const HERE = import.meta.dirname;

/** Where the assets are: beside this module from source, or dist/console-assets beside the bundle. */
export function assetsDir(): string {
  const candidates = [join(HERE, 'assets'), join(HERE, 'console-assets')];
  return candidates.find((d) => existsSync(join(d, 'console.css'))) ?? candidates[0]!;
}

export function assetRoutes(app: FastifyInstance): void {
  const dir = assetsDir();
  app.get<{ Params: { file: string } }>('/assets/:file', async (req, reply) => {
    const name = req.params.file;
    const m = NAME.exec(name);
    const type = m ? TYPES[m[1]!] : undefined;
    const path = m && type ? join(dir, name) : null;
    const st = path ? await stat(path).catch(() => null) : null;
    if (!path || !st?.isFile()) throw new RuError('ROUTE_UNKNOWN', `no console asset ${JSON.stringify(name.slice(0, 100))}`);
    const body = await readFile(path);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    // Revalidated on each use, so an upgraded server's assets are picked up at once.
    reply.header('cache-control', 'no-cache').header('etag', etag);
    if (req.headers['if-none-match'] === etag) return reply.code(304).send();
    return reply.type(type!).send(body);
  });
}
