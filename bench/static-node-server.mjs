// The "plain node:http" baseline of bench/serve.ts: the least a Node server has to do to serve
// the benchmark's files (no auth, no storage lookup), so the serving benchmark shows how far
// a product server is from plain Node as well as from nginx. Run as its own process so its
// RSS can be sampled and it never shares an event loop with the harness.
//
//   node bench/static-node-server.mjs <dir>
// serves GET /files/c<i>.tar.gz from <dir>/files/ on 127.0.0.1 at a free port, and prints
// {"port":N} on one line once it listens.

import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/static-node-server.mjs <dir>');

const FILE = /^\/files\/(c\d+\.tar\.gz)$/;

const server = createServer((req, res) => {
  const m = FILE.exec(req.url ?? '');
  if (req.method !== 'GET' || !m) {
    res.writeHead(404).end();
    return;
  }
  const path = join(dir, 'files', m[1]);
  let size;
  try {
    size = statSync(path).size;
  } catch {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'application/gzip', 'Content-Length': size });
  pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), res, () => {});
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
});
