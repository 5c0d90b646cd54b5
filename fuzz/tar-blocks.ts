// Byte-level tar surgery for the fuzzer: split an uncompressed archive into its records
// (header block plus data blocks), edit one header field and recompute the checksum so the
// header is still accepted, and build the extra records a hostile archive carries (PAX and GNU
// long-name records, members no packer would write). Lenient on purpose: it must walk archives
// that earlier mutations already damaged.

import { Header, type HeaderData } from 'tar';

export const BLOCK = 512;

/** ustar header fields: offset and length (POSIX.1-1988, with GNU's reading of the same bytes). */
export const FIELDS = {
  name: [0, 100],
  mode: [100, 8],
  uid: [108, 8],
  gid: [116, 8],
  size: [124, 12],
  mtime: [136, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  uname: [265, 32],
  gname: [297, 32],
  devmajor: [329, 8],
  devminor: [337, 8],
  prefix: [345, 155],
} as const satisfies Record<string, readonly [number, number]>;

export type FieldName = keyof typeof FIELDS;

/** One record: a header block and the data blocks its size field announces (as far as present). */
export interface TarRecord {
  readonly header: Buffer;
  readonly data: Buffer;
}

export interface SplitTar {
  readonly records: TarRecord[];
  /** Whatever follows the last record: end blocks, trailing bytes, an unparseable rest. */
  readonly tail: Buffer;
}

const isZero = (b: Buffer): boolean => {
  for (const x of b) if (x !== 0) return false;
  return true;
};

/** The size field as a lenient reader sees it: octal, or base-256 when the top bit is set. */
export function sizeOf(header: Buffer): number | null {
  const [off, len] = FIELDS.size;
  const f = header.subarray(off, off + len);
  if (((f[0] ?? 0) & 0x80) !== 0) {
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + (f[i] ?? 0);
    return (f[0] ?? 0) === 0x80 && Number.isSafeInteger(n) ? n : null;
  }
  const s = f.toString('latin1').replace(/\0.*$/s, '').trim();
  if (!/^[0-7]*$/.test(s)) return null;
  return s === '' ? 0 : parseInt(s, 8);
}

/** Splits a tar into records up to the first zero block (or anything unparseable). */
export function splitTar(tar: Buffer): SplitTar {
  const records: TarRecord[] = [];
  let off = 0;
  while (off + BLOCK <= tar.length) {
    const header = tar.subarray(off, off + BLOCK);
    if (isZero(header)) break;
    const size = sizeOf(header);
    if (size === null || size > tar.length) break;
    const dataLen = Math.ceil(size / BLOCK) * BLOCK;
    records.push({ header: Buffer.from(header), data: Buffer.from(tar.subarray(off + BLOCK, Math.min(tar.length, off + BLOCK + dataLen))) });
    off += BLOCK + dataLen;
  }
  return { records, tail: Buffer.from(tar.subarray(Math.min(off, tar.length))) };
}

export const joinTar = (t: SplitTar): Buffer => Buffer.concat([...t.records.flatMap((r) => [r.header, r.data]), t.tail]);

/** The checksum as pack and node-tar compute it (unsigned bytes; GNU tar also accepts signed). */
export function fixChecksum(header: Buffer, signed = false): void {
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = header[i] ?? 0;
    sum += signed && b > 127 ? b - 256 : b;
  }
  header.write(`${(sum >>> 0 & 0o777777).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
}

/** Writes `value` into a field, NUL-padded (or cut) to the field's length. */
export function setField(header: Buffer, field: FieldName, value: Buffer): void {
  const [off, len] = FIELDS[field];
  header.fill(0, off, off + len);
  value.copy(header, off, 0, Math.min(len, value.length));
}

export const getField = (header: Buffer, field: FieldName): Buffer => {
  const [off, len] = FIELDS[field];
  return header.subarray(off, off + len);
};

/** The name a header carries in its own fields (no PAX or GNU long name applied). */
export function nameOf(header: Buffer): string {
  return getField(header, 'name').toString('utf8').replace(/\0.*$/s, '');
}

export const typeflagOf = (header: Buffer): string => String.fromCharCode(header[156] ?? 0);

/** Records that describe the next member instead of being one. */
export const isMetaRecord = (r: TarRecord): boolean => ['x', 'g', 'L', 'K'].includes(typeflagOf(r.header));

/** The body padded to whole blocks. */
export const padded = (body: Buffer): Buffer => Buffer.concat([body, Buffer.alloc((BLOCK - (body.length % BLOCK)) % BLOCK)]);

/** A member encoded by node-tar (ustar, no PAX): names that do not fit are cut, as a hostile writer may. */
export function record(data: HeaderData, body: Buffer = Buffer.alloc(0)): TarRecord {
  const header = Buffer.alloc(BLOCK);
  new Header({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(0), size: body.length, ...data }).encode(header, 0);
  return { header, data: padded(body) };
}

/** One PAX record, `LEN key=value\n`, LEN counting itself; `lenDelta` breaks the length on purpose. */
export function paxLine(key: string, value: Buffer | string, lenDelta = 0): Buffer {
  const kv = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = kv.length + 1;
  while (String(len).length + kv.length !== len) len += 1;
  return Buffer.concat([Buffer.from(String(len + lenDelta)), kv]);
}

/** A metadata record (PAX `x`/`g`, GNU `L`/`K`) carrying `body`. */
export function metaRecord(type: 'x' | 'g' | 'L' | 'K', body: Buffer): TarRecord {
  const name = type === 'L' || type === 'K' ? '././@LongLink' : 'PaxHeader/fuzz';
  const r = record({ path: name, type: 'File', size: body.length }, body);
  r.header[156] = type.charCodeAt(0);
  fixChecksum(r.header);
  return r;
}
