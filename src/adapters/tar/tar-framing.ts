// The tar framing as GNU tar reads it, checked block by block before node-tar's Parser sees the
// bytes. node-tar is lenient where GNU tar is strict or reads differently, and every such
// difference lets an archive show one set of members to `tar -tvzf` (what an admin checks) and
// install another (found by the fuzz harness, fuzz/; one regression test each in
// test/security/fuzz-findings.test.ts):
//   - a lone zero block: GNU tar stops reading there, node-tar reads on;
//   - numeric header fields with trailing garbage, a sign, a leading NUL or a negative
//     base-256 value: GNU tar refuses or reads another number than node-tar's parseInt;
//   - magic "ustar\0" with a version other than "00": GNU tar prepends the prefix field to
//     the name, node-tar does not;
//   - names, link targets and PAX values that are not UTF-8 (node-tar turns them into U+FFFD
//     and installs another name) or contain a newline (node-tar splits PAX records on it);
//   - malformed PAX records, which GNU tar refuses and node-tar skips; PAX keys only one of
//     them honours (`mode`, `type`, GNU.sparse.*, a global `path`/`linkpath`); PAX numbers that
//     are not numbers;
//   - data on a directory or link member: node-tar forces a directory's size to 0 and reads
//     the next header inside what GNU tar skips as data;
//   - a contiguous-file member (type 7) named with a trailing slash: a directory to GNU tar;
//   - a block whose only non-zero bytes are in the checksum field: an end block to node-tar,
//     a header with a wrong checksum to GNU tar;
//   - metadata records GNU tar combines differently: two for one member, one for no member,
//     an empty GNU long name, an old GNU long-name record (type N);
//   - uids, gids and times out of range: GNU tar refuses ids beyond uid_t, node-tar turns times
//     beyond a JavaScript Date into NaN (staging then failed with IO_ERROR);
//   - owner names (uname/gname), recorded per member in `ownerNames` for the reader: GNU tar
//     as root installs owners by name, so a bundle with a manifest must carry none.
// Anything it cannot follow (unknown member types, a PAX size record) it leaves to the reader,
// which refuses those by name.

import { RuError } from '../../core/errors.ts';

const BLOCK = 512;
/** PAX records larger than this are the reader's (ignoredEntry → LIMIT_NAME), not ours. */
const MAX_META = 1024 * 1024;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const isUtf8 = (b: Uint8Array): boolean => {
  try {
    utf8.decode(b);
    return true;
  } catch {
    return false;
  }
};

const cstring = (b: Buffer, off: number, len: number): Buffer => {
  const f = b.subarray(off, off + len);
  const nul = f.indexOf(0);
  return nul === -1 ? f : f.subarray(0, nul);
};

/** Seconds a JavaScript Date can hold (node-tar's mtime becomes NaN beyond, GNU tar reads on). */
const MAX_TIME = 8.64e12;
/** GNU tar's uid_t and gid_t. */
const MAX_ID = 0xffffffff;

const corrupt = (message: string, context: Record<string, string> = {}): RuError => new RuError('BUNDLE_CORRUPT', message, context);

/** A numeric header field as both readers agree on it, or a refusal. Returns the value. */
function numeric(h: Buffer, off: number, len: number, what: string, name: string): number {
  const f = h.subarray(off, off + len);
  const first = f[0] ?? 0;
  if (first === 0x80) {
    let n = 0;
    for (let i = 1; i < f.length; i++) n = n * 256 + (f[i] ?? 0);
    if (!Number.isSafeInteger(n)) throw corrupt(`${name}: the ${what} field is a base-256 number too large to read`, { path: name });
    return n;
  }
  if (first & 0x80) throw corrupt(`${name}: the ${what} field is a negative or malformed base-256 number`, { path: name });
  // GNU tar skips one leading NUL and reads digits after it; node-tar stops at that NUL.
  if (first === 0 && f.length > 1 && f[1] !== 0) throw corrupt(`${name}: the ${what} field starts with NUL and goes on (GNU tar and node-tar read different numbers)`, { path: name });
  const s = f.toString('latin1');
  const m = /^ *([0-7]*)(?:[ \0]|$)/.exec(s);
  if (!m) throw corrupt(`${name}: the ${what} field ${JSON.stringify(s.replace(/\0+$/, ''))} is not an octal number`, { path: name });
  return m[1] ? parseInt(m[1], 8) : 0;
}

/** One PAX record set, parsed by its lengths as GNU tar does; refuses what node-tar would read otherwise. */
function checkPax(body: Buffer, global: boolean, name: string): { sizeRecord: boolean; path: string | null; owner: string | null } {
  let owner: string | null = null;
  let pos = 0;
  let sizeRecord = false;
  let path: string | null = null;
  while (pos < body.length) {
    // GNU tar stops at a NUL where a record should start (padding); so does node-tar's split.
    if (body[pos] === 0) break;
    const sp = body.indexOf(0x20, pos);
    const digits = sp === -1 ? '' : body.subarray(pos, sp).toString('latin1');
    if (!/^[1-9]\d{0,7}$/.test(digits)) throw corrupt(`${name}: malformed PAX record (no length) at byte ${pos}`, { path: name });
    const len = Number(digits);
    const rec = body.subarray(pos, pos + len);
    if (rec.length !== len || rec[len - 1] !== 0x0a) throw corrupt(`${name}: malformed PAX record (length ${len} does not end at a newline)`, { path: name });
    const kv = rec.subarray(sp - pos + 1, len - 1);
    const eq = kv.indexOf(0x3d);
    if (eq <= 0) throw corrupt(`${name}: malformed PAX record (no key=value)`, { path: name });
    const key = kv.subarray(0, eq).toString('latin1');
    const value = kv.subarray(eq + 1);
    if (!isUtf8(kv)) throw corrupt(`${name}: PAX record ${JSON.stringify(key)} is not UTF-8`, { path: name });
    if (value.includes(0x0a) || value.includes(0)) throw corrupt(`${name}: PAX record ${JSON.stringify(key)} contains a newline or NUL, which node-tar reads differently`, { path: name });
    const v = value.toString('utf8');
    if (key === 'size') {
      // A well-formed one is refused by the reader, naming the member (entry smuggling); one
      // that is no number node-tar drops, while GNU tar refuses the archive.
      if (!/^\d{1,15}$/.test(v)) throw corrupt(`${name}: PAX record size=${JSON.stringify(v.slice(0, 40))} is not a size`, { path: name, key });
      sizeRecord = true;
    } else if (key === 'mode' || key === 'type' || key.startsWith('GNU.sparse.')) {
      throw corrupt(`${name}: PAX record ${JSON.stringify(key)} is honoured by node-tar or GNU tar but not by both`, { path: name, key });
    } else if (global && (key === 'path' || key === 'linkpath')) {
      throw corrupt(`${name}: a global PAX record ${JSON.stringify(key)} is read differently by node-tar and GNU tar`, { path: name, key });
    } else if ((key === 'uid' || key === 'gid') && !(/^\d{1,10}$/.test(v) && Number(v) <= 0xffffffff)) {
      throw corrupt(`${name}: PAX record ${key}=${JSON.stringify(v.slice(0, 40))} is not a valid id`, { path: name, key });
    } else if ((key === 'mtime' || key === 'atime' || key === 'ctime') && !(/^-?\d{1,13}(\.\d{1,9})?$/.test(v) && Math.abs(Number(v)) <= MAX_TIME)) {
      throw corrupt(`${name}: PAX record ${key}=${JSON.stringify(v.slice(0, 40))} is not a time`, { path: name, key });
    }
    if (key === 'path') path = v;
    if ((key === 'uname' || key === 'gname') && v !== '') owner = `${owner ? `${owner} ` : ''}${key}=${v}`;
    pos += len;
  }
  return { sizeRecord, path, owner };
}

const KNOWN = new Set(['0', '\0', '1', '2', '5', '7', 'x', 'X', 'g', 'L', 'K']);
const META = new Set(['x', 'X', 'g', 'L', 'K', 'N']);

/** Walks the uncompressed tar as it streams (whole blocks), throwing BUNDLE_CORRUPT on the first difference. */
export class TarFraming {
  /** Bytes of data still to skip after a header. */
  #skip = 0;
  /** Collecting a PAX body: its type, what is left to read, and the bytes so far. */
  #meta: { type: string; left: number; size: number; parts: Buffer[] } | null = null;
  #zero = false;
  /** The pending PAX path ends with a slash (GNU tar then makes a contiguous file a directory). */
  #paxDir = false;
  /** The previous header was a per-member metadata record (PAX x/X, GNU L/K): a member must follow. */
  #pending: string | null = null;
  /** The previous header was a PAX extended header (x or X). */
  #afterPax = false;
  /** Owner names of the pending PAX records. */
  #paxOwner: string | null = null;
  /**
   * For each member header in order (what node-tar emits as entries): the owner and group
   * names it carries, or null. GNU tar run as root installs owners by these names; a bundle's
   * members carry numeric owners only, which the reader checks against its manifest.
   */
  readonly ownerNames: (string | null)[] = [];
  /** Past the end blocks, or handed over to the reader (something it refuses by name). */
  #done = false;

  update(chunk: Buffer): void {
    let off = 0;
    while (!this.#done && off + BLOCK <= chunk.length) {
      const block = chunk.subarray(off, off + BLOCK);
      off += BLOCK;
      if (this.#meta) {
        const take = Math.min(BLOCK, this.#meta.left);
        this.#meta.parts.push(Buffer.from(block.subarray(0, take)));
        this.#meta.left -= take;
        if (this.#meta.left === 0) {
          const m = this.#meta;
          this.#meta = null;
          const body = Buffer.concat(m.parts);
          if (m.type === 'L' || m.type === 'K') {
            // GNU long names: both readers stop at the first NUL; node-tar decodes the rest as UTF-8.
            if (!isUtf8(cstring(body, 0, body.length))) throw new RuError('ENTRY_PATH_INVALID', `a GNU long ${m.type === 'L' ? 'name' : 'link target'} is not UTF-8 (node-tar would install another name than GNU tar shows)`, { path: body.subarray(0, 200).toString('latin1') });
            continue;
          }
          const global = m.type === 'g';
          const pax = checkPax(body, global, 'PAX header');
          if (pax.sizeRecord) this.#done = true;
          if (!global && pax.path !== null) this.#paxDir = pax.path.endsWith('/');
          if (pax.owner) this.#paxOwner = global ? `${pax.owner} (global)` : pax.owner;
        }
        continue;
      }
      if (this.#skip > 0) {
        this.#skip -= BLOCK;
        continue;
      }
      this.#header(block);
    }
  }

  #header(h: Buffer): void {
    if (h.every((b) => b === 0)) {
      // GNU tar reads the zero block as a member with an empty name; node-tar drops the record.
      if (this.#pending) throw corrupt(`a ${this.#pending} record describes no member: the archive ends after it`);
      if (this.#zero) this.#done = true; // the end: what follows is ignored by both readers
      this.#zero = true;
      return;
    }
    if (this.#zero) throw corrupt('a lone zero block in the middle of the archive: GNU tar stops reading there, so the members after it would be installed unseen');
    const rawName = cstring(h, 0, 100);
    const name = rawName.toString('utf8').slice(0, 200);
    const type = String.fromCharCode(h[156] ?? 0);
    const magic = h.subarray(257, 263).toString('latin1');
    const version = h.subarray(263, 265).toString('latin1');
    if (magic === 'ustar\0' && version !== '00') {
      throw corrupt(`${name}: ustar magic with version ${JSON.stringify(version)}: GNU tar prepends the prefix field to the name, node-tar does not`, { path: name });
    }
    for (const [off, len, what] of [[0, 100, 'name'], [157, 100, 'link target'], [345, 155, 'prefix'], [265, 32, 'owner name'], [297, 32, 'group name']] as const) {
      if (!isUtf8(cstring(h, off, len))) {
        throw new RuError('ENTRY_PATH_INVALID', `${name}: the ${what} is not UTF-8 (node-tar would install another name than GNU tar shows)`, { path: name });
      }
    }
    for (const [off, len, what] of [[100, 8, 'mode'], [108, 8, 'uid'], [116, 8, 'gid'], [136, 12, 'mtime'], [329, 8, 'devmajor'], [337, 8, 'devminor']] as const) {
      const n = numeric(h, off, len, what, name);
      if ((what === 'uid' || what === 'gid') && n > MAX_ID) throw corrupt(`${name}: ${what} ${n} is beyond what GNU tar accepts`, { path: name });
      if (what === 'mtime' && n > MAX_TIME) throw corrupt(`${name}: mtime ${n} is beyond what node-tar can represent`, { path: name });
    }
    const size = numeric(h, 124, 12, 'size', name);
    // node-tar takes a block whose only non-zero bytes are in the checksum field for an end
    // block; GNU tar finds its checksum wrong and fails. Checked as GNU tar does (either sum).
    let unsigned = 8 * 0x20;
    let signed = 8 * 0x20;
    for (let i = 0; i < BLOCK; i++) {
      if (i >= 148 && i < 156) continue;
      const b = h[i] ?? 0;
      unsigned += b;
      signed += b > 127 ? b - 256 : b;
    }
    const stated = numeric(h, 148, 8, 'checksum', name);
    if (stated !== unsigned && stated !== signed) throw corrupt(`${name || '(empty name)'}: header checksum ${stated} does not match ${unsigned}`, { path: name });
    if (!META.has(type)) {
      const u = cstring(h, 265, 32).toString('utf8');
      const g = cstring(h, 297, 32).toString('utf8');
      const own = [u ? `uname=${u}` : '', g ? `gname=${g}` : '', this.#paxOwner ?? ''].filter((x) => x !== '').join(' ');
      this.ownerNames.push(own || null);
      if (!(this.#paxOwner ?? '').endsWith('(global)')) this.#paxOwner = null;
    }
    if (type === 'N') throw corrupt(`${name}: an old GNU long-name record (type N): node-tar takes it as the next member's name, GNU tar does not`, { path: name });
    // GNU tar lets a second extended header replace the first; node-tar merges them, and a
    // GNU long name after a PAX header wins in node-tar but loses in GNU tar.
    if (this.#afterPax && META.has(type)) throw corrupt(`${name}: another metadata record (type ${type}) after a PAX header: GNU tar and node-tar combine them differently`, { path: name });
    this.#afterPax = type === 'x' || type === 'X';
    this.#pending = type === 'x' || type === 'X' ? 'PAX' : type === 'L' || type === 'K' ? 'GNU long-name' : null;
    if (!KNOWN.has(type)) {
      this.#done = true; // devices, FIFOs, sparse and other types: the reader refuses them by name
      return;
    }
    if ((type === '1' || type === '2' || type === '5') && size !== 0) {
      throw corrupt(`${name}: a ${type === '5' ? 'directory' : 'link'} member announces ${size} bytes of data (node-tar reads its next header there, GNU tar skips them)`, { path: name });
    }
    if (type === '7' && (rawName.at(-1) === 0x2f || this.#paxDir)) {
      throw corrupt(`${name}: a contiguous-file member whose name ends with a slash: GNU tar makes it a directory, node-tar a file`, { path: name });
    }
    if (!META.has(type)) this.#paxDir = false;
    if ((type === 'L' || type === 'K') && size === 0) {
      // GNU tar gives the next member an empty name (and extracts it as "."); node-tar ignores it.
      throw corrupt(`${name}: an empty GNU long ${type === 'L' ? 'name' : 'link target'} record`, { path: name });
    }
    if (type === 'x' || type === 'X' || type === 'g' || type === 'L' || type === 'K') {
      if (size > MAX_META) {
        this.#done = true; // refused by the reader (LIMIT_NAME)
        return;
      }
      if (size > 0) this.#meta = { type, left: size, size, parts: [] };
      return;
    }
    this.#skip = Math.ceil(size / BLOCK) * BLOCK;
  }
}
