// Where a recovery log's bytes are (the index of logs, LogRecord, is in the metadata store).
// In the data directory's logs/ by default (adapters/storage/dir-logs.ts); with --blobs postgres
// in the database (adapters/storage/pg-logs.ts), so that every instance can read a log that
// another one receives, and the one PostgreSQL cluster is the only state to protect.

export interface LogBytesStore {
  /** Where the bytes are, for messages and `serve --check`: a directory, or "postgres". */
  readonly where: string;
  /**
   * Appends `data` to log `id`, whose size before it is `offset` (the caller, the one upload of
   * that log, knows it). Bytes are readable by every reader once this resolves.
   */
  append(id: number, offset: number, data: Buffer): Promise<void>;
  /** The bytes stored for log `id` (0 when none). */
  size(id: number): Promise<number>;
  /** Bytes [start, end) of log `id` (end: its size now), in order, in chunks. */
  read(id: number, start: number, end?: number): AsyncIterable<Buffer>;
  /** Every log id that has bytes here, with its size (the store check compares them with the index). */
  list(): AsyncIterable<{ id: number; bytes: number }>;
  close(): Promise<void>;
}
