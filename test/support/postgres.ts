// A private PostgreSQL 15 cluster for one test file: the PostgreSQL backend is tested against
// the real server (Debian's postgresql package), never a mock. initdb into a temporary
// directory, `postgres` listening only on a unix socket in that directory (no TCP port to
// collide with), run as the `postgres` system user when the tests run as root (PostgreSQL
// refuses to run as root). Each suite or test gets a database of its own (CREATE DATABASE is
// fast); the cluster can be stopped and started again to test what an outage does.

import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import pg from 'pg';

export const PG_BIN = process.env.REAR_UPDATE_PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PORT = 5432; // names the socket file only: nothing listens on TCP

export interface PgCluster {
  /** The directory holding the data and the socket. */
  readonly dir: string;
  /** The socket directory (the `host` of the URLs). */
  readonly socketDir: string;
  /** A URL of database `db`, as `serve --db` takes it. */
  url(db: string): string;
  /** Creates a fresh, empty database and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** Stops the server (fast shutdown: connections are cut), keeping the data. */
  stop(): void;
  /** Starts it again after stop(). */
  start(): void;
  /** Stops the server and removes the directory. */
  destroy(): void;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL program as the cluster's owner; long timeouts: a loaded 2-core machine is slow. */
function run(dir: string, program: string, args: readonly string[], timeoutMs = 180_000): void {
  const cmd = asRoot ? ['runuser', '-u', 'postgres', '--', join(PG_BIN, program), ...args] : [join(PG_BIN, program), ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd: dir, encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`${program} ${args.join(' ')} failed (${r.status ?? r.signal ?? r.error?.message}): ${r.stderr}${r.stdout}`);
}

export function startPgCluster(): PgCluster {
  if (!existsSync(join(PG_BIN, 'initdb'))) throw new Error(`PostgreSQL 15 is not installed (${PG_BIN}/initdb): scripts/ensure-system-deps.sh installs it`);
  const dir = mkdtempSync(join(tmpdir(), 'ru-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'postgres.log');
  mkdirSync(data, { mode: 0o700 });
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    chownSync(data, uid, gid);
  }
  run(dir, 'initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
  // Durability is not what these tests are about: fsync off keeps CREATE DATABASE quick.
  const options = `-k ${dir} -p ${PORT} -c listen_addresses='' -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200`;
  let running = false;
  const start = (): void => {
    run(dir, 'pg_ctl', ['-D', data, '-l', log, '-o', options, '-w', '-t', '180', 'start']);
    running = true;
  };
  const stop = (): void => {
    if (!running) return;
    run(dir, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '180', 'stop']);
    running = false;
  };
  // A test process that dies without its after() hooks must not leave a server behind.
  const onExit = (): void => {
    if (running) spawnSync(asRoot ? 'runuser' : join(PG_BIN, 'pg_ctl'), [...(asRoot ? ['-u', 'postgres', '--', join(PG_BIN, 'pg_ctl')] : []), '-D', data, '-m', 'immediate', 'stop'], { stdio: 'ignore', timeout: 30_000 });
  };
  process.once('exit', onExit);
  start();
  const url = (db: string): string => `postgres://postgres@/${db}?host=${encodeURIComponent(dir)}&port=${PORT}`;
  let n = 0;
  return {
    dir,
    socketDir: dir,
    url,
    async createDatabase(prefix = 'ru') {
      const name = `${prefix}_${process.pid}_${++n}`;
      const c = new pg.Client({ connectionString: url('postgres') });
      await c.connect();
      try {
        await c.query(`create database "${name}"`);
      } finally {
        await c.end();
      }
      return url(name);
    },
    stop,
    start,
    destroy() {
      try {
        stop();
      } finally {
        process.removeListener('exit', onExit);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * One cluster for the calling test file: started on first use, destroyed in the file's after()
 * hook. Call it at the top level of the file.
 */
export function usePgCluster(): () => PgCluster {
  let cluster: PgCluster | undefined;
  after(() => cluster?.destroy());
  return () => (cluster ??= startPgCluster());
}
