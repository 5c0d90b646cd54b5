// Where a bundle comes from: a local path, a file:// URL, or an http(s):// URL downloaded
// (resumably) to a temporary file first. Returns a stream to read and a cleanup to call.

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PooledFileStream } from '../adapters/tar/buffer-pools.ts';
import { RuError } from '../core/errors.ts';

export interface OpenedSource {
  readonly stream: PooledFileStream;
  readonly size: number;
  readonly label: string;
  cleanup(): void;
}

export function openFile(path: string): OpenedSource {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new RuError('SOURCE_NOT_FOUND', `${path}: ${st ? 'not a regular file' : 'no such file'}`, { path });
  return { stream: new PooledFileStream(path), size: st.size, label: path, cleanup: () => undefined };
}

/** The URL without user:password, for messages and records. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

export async function openSource(src: string, opts: { cacert?: string; quiet?: boolean; headers?: Record<string, string>; label?: string }): Promise<OpenedSource> {
  if (/^file:\/\//i.test(src)) return openFile(fileURLToPath(src));
  if (!/^https?:\/\//i.test(src)) return openFile(src);
  const dir = mkdtempSync(join(tmpdir(), 'rear-update-dl-'));
  const dest = join(dir, 'bundle.tar.gz');
  const label = opts.label ?? redact(src);
  // Loaded on demand: http, https, tls and the progress bar cost start-up time that a local
  // apply (the common case in a rescue shell) should not pay.
  const [{ download }, { Progress }] = await Promise.all([import('../adapters/http/download.ts'), import('./progress.ts')]);
  const progress = new Progress(`downloading ${label}`, opts.quiet === true);
  try {
    await download(src, dest, {
      ...(opts.cacert ? { cacert: readFileSync(opts.cacert, 'utf8') } : {}),
      ...(opts.headers ? { headers: opts.headers } : {}),
      onProgress: (n, total) => progress.update(n, total),
      onRetry: (attempt, reason, delay) => progress.message(`retry ${attempt} in ${Math.round(delay / 100) / 10}s: ${reason}`),
    });
  } catch (e) {
    progress.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  progress.stop();
  const opened = openFile(dest);
  return { ...opened, label, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
