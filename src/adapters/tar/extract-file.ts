// One regular file out of a stored payload (gzip'd tar members), for the DRLM config route:
// the server hands ReaR the host's etc/rear/local.conf without unpacking the bundle anywhere.
// Reading stops at the member found; members are matched by their canonical name.

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { RuError } from '../../core/errors.ts';

export async function extractFile(gz: AsyncIterable<Uint8Array>, path: string, maxBytes: number): Promise<Buffer | null> {
  let found: Buffer | null = null;
  const want = new Set([path, `./${path}`]);
  const parser = new Parser({
    filter: (p: string) => want.has(p),
    onReadEntry: (entry: ReadEntry) => {
      if (entry.type !== 'File') {
        entry.resume();
        return;
      }
      if (entry.size > maxBytes) {
        parser.abort(new RuError('LIMIT_BYTES', `${path} is ${entry.size} bytes, more than ${maxBytes}`, { path }));
        return;
      }
      const parts: Buffer[] = [];
      entry.on('data', (c: Buffer) => parts.push(c));
      entry.on('end', () => {
        found = Buffer.concat(parts);
      });
    },
  });
  const src = Readable.from(gz, { objectMode: false });
  await pipeline(src, createGunzip(), parser);
  return found;
}
