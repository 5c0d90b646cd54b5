// The client for original systems, from the server they publish to (issue 15; docs/operations.md):
//   GET /download/rear-update       the one-file executable, with X-Rear-Update-Sha256 and
//                                   X-Rear-Update-Signature (the server's signature over a
//                                   statement of its name, sha256 and size: core/download-statement.ts)
//   GET /download/rear-update.sig   that signature record alone (JSON)
//   GET /download/                  what there is: the executable and the packages, with sizes and sha256
//   GET /download/NAME              a .deb or .rpm from the packages directory, signed the same way
// Any valid token may download, whatever its scope: the files hold no secret (a fetch token in a
// rescue image and a host's publish token are equally entitled), but like every other route of
// this server they are not handed to anyone who asks.
// Where the files are: serve's --client-exe (default: dist/rear-update beside the running
// dist/rear-update.cjs, what `npm run build:exe` makes) and --packages (none by default).

import { createHash } from 'node:crypto';
import { createReadStream, fstatSync, openSync, closeSync, readdirSync, lstatSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RuError } from '../../core/errors.ts';
import { SHA256_HEADER, SIGNATURE_HEADER, signDownload, type DownloadFacts } from '../../core/download-statement.ts';
import { authenticate } from '../auth.ts';
import type { ServerContext } from '../context.ts';

export const CLIENT_NAME = 'rear-update';
const PACKAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,200}\.(deb|rpm)$/;

export interface DownloadSources {
  /** The one-file executable, or null: none to serve. */
  readonly clientExe: string | null;
  /** A directory of .deb/.rpm files, or null. */
  readonly packages: string | null;
}

/** The defaults: the executable beside the running bundle, no packages. */
export function downloadSources(): DownloadSources {
  const beside = process.argv[1] ? join(dirname(resolve(process.argv[1])), CLIENT_NAME) : null;
  return { clientExe: beside, packages: null };
}

/** sha256 of a file, remembered while its inode, size and mtime stay (a 100 MiB hash per request would be waste). */
function digestCache(): (path: string, fd: number, st: Stats) => Promise<string> {
  const memo = new Map<string, { key: string; sha256: string }>();
  return async (path, fd, st) => {
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    const hit = memo.get(path);
    if (hit?.key === key) return hit.sha256;
    const h = createHash('sha256');
    for await (const c of createReadStream('', { fd, start: 0, autoClose: false }) as AsyncIterable<Buffer>) h.update(c);
    const sha256 = h.digest('hex');
    memo.set(path, { key, sha256 });
    return sha256;
  };
}

interface Opened {
  readonly fd: number;
  readonly facts: DownloadFacts;
}

export function downloadRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const src = ctx.downloads;
  const sha256Of = digestCache();

  const token = async (req: FastifyRequest): Promise<void> => {
    await authenticate(req, ctx, { cached: true });
  };

  /** Opens a regular file (never through a symlink) and reads its facts from the open descriptor. */
  const open = async (path: string, name: string): Promise<Opened> => {
    let fd: number;
    try {
      if (!lstatSync(path).isFile()) throw new Error('not a regular file');
      fd = openSync(path, 'r');
    } catch {
      throw new RuError('ROUTE_UNKNOWN', `this server has no ${name} to hand out`, { name });
    }
    try {
      const st = fstatSync(fd);
      return { fd, facts: { name, size: st.size, sha256: await sha256Of(path, fd, st) } };
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  };

  const signature = (f: DownloadFacts): Buffer => signDownload(f, ctx.key);

  const send = (reply: FastifyReply, o: Opened, type: string): FastifyReply => {
    reply
      .header('content-type', type)
      .header('content-length', o.facts.size)
      .header('cache-control', 'no-store')
      .header('content-disposition', `attachment; filename="${o.facts.name}"`)
      .header(SHA256_HEADER, o.facts.sha256)
      .header(SIGNATURE_HEADER, signature(o.facts).toString('base64'));
    return reply.send(createReadStream('', { fd: o.fd, start: 0, end: Math.max(0, o.facts.size - 1) }));
  };

  const client = (): string => {
    if (!src.clientExe) throw new RuError('ROUTE_UNKNOWN', 'this server has no rear-update executable to hand out (REAR_UPDATE_CLIENT_EXE)');
    return src.clientExe;
  };

  app.get('/download/rear-update', async (req, reply) => {
    await token(req);
    return send(reply, await open(client(), CLIENT_NAME), 'application/octet-stream');
  });

  app.get('/download/rear-update.sig', async (req, reply) => {
    await token(req);
    const o = await open(client(), CLIENT_NAME);
    closeSync(o.fd);
    reply.header('cache-control', 'no-store').header(SHA256_HEADER, o.facts.sha256).header('content-type', 'application/json');
    return reply.send(signature(o.facts));
  });

  app.get('/download/', async (req) => {
    await token(req);
    const files: DownloadFacts[] = [];
    const add = async (path: string, name: string): Promise<void> => {
      try {
        const o = await open(path, name);
        closeSync(o.fd);
        files.push(o.facts);
      } catch {
        // absent: not listed
      }
    };
    if (src.clientExe) await add(src.clientExe, CLIENT_NAME);
    if (src.packages) {
      let names: string[] = [];
      try {
        names = readdirSync(src.packages).filter((n) => PACKAGE_NAME.test(n)).sort();
      } catch {
        // no such directory: no packages
      }
      for (const n of names) await add(join(src.packages, n), n);
    }
    return { files: files.map((f) => ({ ...f, url: `/download/${encodeURIComponent(f.name)}` })) };
  });

  app.get<{ Params: { name: string } }>('/download/:name', async (req, reply) => {
    await token(req);
    const name = req.params.name;
    if (!PACKAGE_NAME.test(name) || basename(name) !== name || !src.packages) throw new RuError('ROUTE_UNKNOWN', `no file ${JSON.stringify(name.slice(0, 100))} to download (GET /download/ lists them)`);
    return send(reply, await open(join(src.packages, name), name), name.endsWith('.deb') ? 'application/vnd.debian.binary-package' : 'application/x-rpm');
  });
}
