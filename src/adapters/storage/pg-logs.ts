// Recovery log bytes in PostgreSQL (with `--blobs postgres`): every instance reads what any
// instance receives, so a live log uploaded to one can be followed on another
// (core/store/log-bytes.ts). A log is rows of log_chunks keyed by the offset each starts at
// (pg-schema.ts, 0005_log_chunks); the receiving LogService writes a chunk per flush (at most
// 64 KiB, or what arrived in a quarter second), so a long quiet log is few rows.

import pg from 'pg';
import type { LogBytesStore } from '../../core/store/log-bytes.ts';
import { fromPgError } from './pg-errors.ts';
import { connectPg } from './pg-metadata.ts';

/** Rows read per query while streaming a log out. */
const READ_ROWS = 64;

export async function openPgLogs(url: string, opts: { poolSize?: number } = {}): Promise<PgLogStore> {
  const { pool, db } = await connectPg<unknown>(url, 'metadata', { poolSize: opts.poolSize ?? 4 }, 'rear-update logs');
  return new PgLogStore(pool, () => db.destroy());
}

export class PgLogStore implements LogBytesStore {
  readonly where = 'postgres';
  readonly #pool: pg.Pool;
  readonly #end: () => Promise<void>;

  constructor(pool: pg.Pool, end: () => Promise<void>) {
    this.#pool = pool;
    this.#end = end;
  }

  async #query<R extends pg.QueryResultRow>(what: string, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await this.#pool.query<R>(text, values);
    } catch (e) {
      throw fromPgError(e, what);
    }
  }

  async append(id: number, offset: number, data: Buffer): Promise<void> {
    if (data.length === 0) return;
    // A retried write of the same chunk (after a lost answer) is the same row: kept once.
    await this.#query(`appending to log ${id}`, 'insert into log_chunks (log_id, "offset", data) values ($1, $2, $3) on conflict do nothing', [id, offset, data]);
  }

  async size(id: number): Promise<number> {
    const r = await this.#query<{ end: string | number | null }>(`reading the size of log ${id}`,
      'select "offset" + length(data) as end from log_chunks where log_id = $1 order by "offset" desc limit 1', [id]);
    return r.rows.length === 0 ? 0 : Number(r.rows[0]!.end);
  }

  async *read(id: number, start: number, end?: number): AsyncIterable<Buffer> {
    const stop = end ?? (await this.size(id));
    let pos = start;
    while (pos < stop) {
      // The chunk holding `pos`, and those after it, a batch at a time.
      const r = await this.#query<{ offset: string | number; data: Buffer }>(`reading log ${id}`,
        'select "offset", data from log_chunks where log_id = $1 and "offset" + length(data) > $2 and "offset" < $3 order by "offset" limit $4',
        [id, pos, stop, READ_ROWS]);
      if (r.rows.length === 0) return;
      for (const row of r.rows) {
        const at = Number(row.offset);
        // A gap (a chunk that never came): stop at it rather than invent bytes.
        if (at > pos) return;
        const piece = row.data.subarray(pos - at, Math.min(row.data.length, stop - at));
        if (piece.length === 0) continue;
        pos += piece.length;
        yield piece;
      }
    }
  }

  async *list(): AsyncIterable<{ id: number; bytes: number }> {
    const r = await this.#query<{ log_id: string | number; bytes: string | number }>('listing logs',
      'select log_id, max("offset" + length(data)) as bytes from log_chunks group by log_id order by log_id', []);
    for (const row of r.rows) yield { id: Number(row.log_id), bytes: Number(row.bytes) };
  }

  async close(): Promise<void> {
    await this.#end();
  }
}
