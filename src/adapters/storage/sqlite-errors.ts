// SQLite's errors, translated into the documented codes (verdaccio's s3Errors idea): callers of
// the store see STORE_BUSY or NO_SPACE, never an SqliteError with a stack trace.

import { fromSystemError, isRuError, RuError } from '../../core/errors.ts';

export function fromSqliteError(e: unknown, what: string): RuError {
  if (isRuError(e)) return e;
  const err = e as { code?: unknown; message?: string };
  const code = typeof err?.code === 'string' ? err.code : '';
  if (!code.startsWith('SQLITE_')) return fromSystemError(e, what);
  const ctx = { sqlite: code };
  const base = code.replace(/^(SQLITE_[A-Z]+)(_.*)?$/, '$1');
  switch (base) {
    case 'SQLITE_FULL':
      return new RuError('NO_SPACE', `no space left while ${what}`, ctx);
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return new RuError('STORE_BUSY', `${what}: the database is locked by another process`, ctx);
    case 'SQLITE_CORRUPT':
    case 'SQLITE_NOTADB':
      return new RuError('STORE_CORRUPT', `${what}: ${err.message}`, ctx);
    case 'SQLITE_CONSTRAINT':
      return new RuError('STORE_CONFLICT', `${what}: ${err.message}`, ctx);
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
    case 'SQLITE_IOERR':
    case 'SQLITE_PERM':
      return new RuError('IO_ERROR', `${what}: ${err.message}`, ctx);
    default:
      return new RuError('INTERNAL', `${what}: ${err.message}`, ctx);
  }
}
