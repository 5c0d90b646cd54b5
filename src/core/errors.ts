// Every refusal rear-update can make, in one table: a stable code, the exit status the CLI
// returns for it, and what the user should do. docs/errors.md mirrors this table (a test
// keeps the two equal); the CLI turns a RuError into an exit status in exactly one place.

export interface ErrorSpec {
  readonly exit: number;
  readonly summary: string;
  readonly action: string;
}

const spec = (exit: number, summary: string, action: string): ErrorSpec => ({ exit, summary, action });

export const ERRORS = {
  // 1: internal / unexpected
  INTERNAL: spec(1, 'An unexpected internal error.', 'Report it with the full message; nothing was committed unless the output said so.'),
  IO_ERROR: spec(1, 'A file system operation failed for a reason not covered by a more specific code.', 'Read the path and system error in the message; fix permissions or the file system.'),
  // 2: usage
  USAGE: spec(2, 'The command line is wrong: unknown option, missing or malformed argument.', 'Run the command with --help.'),
  // 3: keys and local configuration
  KEY_INVALID: spec(3, 'A key file is not a rear-update ed25519 key in the documented PEM format.', 'Check the path; create keys with `rear-update keygen`.'),
  KEY_NOT_FOUND: spec(3, 'A key file or keys directory named on the command line does not exist.', 'Check the path given to --key, --pubkey or --keys-dir.'),
  KEY_EXISTS: spec(3, '`keygen` would overwrite an existing key.', 'Choose another --out directory or remove the old key deliberately (use --force).'),
  KEY_STATEMENT_INVALID: spec(3, 'A key statement given to this machine (a *.statement file in the keys directory, or --statement FILE) is malformed, or its signature by a key this machine trusts does not verify: forged or altered. (Statements the server sends that fail are ignored and named instead.) docs/keys.md describes the format.', 'Remove or replace the file; get statements from `rear-update key rotate`/`key retire` or the server (GET /api/v1/key-statements).'),
  // 4: the bundle is not what it claims to be (integrity, signature, trust)
  SOURCE_NOT_FOUND: spec(4, 'The bundle file does not exist or is not a regular file.', 'Check the path or URL.'),
  BUNDLE_CORRUPT: spec(4, 'The file is not a readable gzip-compressed tar archive (bad gzip data, checksum, truncated, or malformed tar headers).', 'Fetch or copy the bundle again; if it keeps failing, re-create it.'),
  BUNDLE_NOT_CANONICAL: spec(4, 'A bundle with a manifest deviates from the canonical encoding (gzip header fields, member order, trailing data).', 'Re-create the bundle with `rear-update pack`; do not recompress it with other tools.'),
  BUNDLE_FORMAT_UNSUPPORTED: spec(4, 'The bundle declares a format version this program does not understand.', 'Upgrade rear-update on this machine.'),
  BUNDLE_MANIFEST_INVALID: spec(4, 'The manifest member is not valid JSON or violates the bundle format.', 'Re-create the bundle with `rear-update pack`.'),
  BUNDLE_UNSIGNED: spec(4, 'The bundle carries no signature (or only a plain tar.gz without a manifest) and --unsigned was not given.', 'Sign it (pack --key) or, if you trust its origin, pass --unsigned explicitly.'),
  BUNDLE_KEY_UNTRUSTED: spec(4, 'The bundle is signed by a key that is not among the trusted keys.', 'Add the signer\'s public key with --pubkey or to the keys directory, after checking its fingerprint.'),
  KEY_RETIRED: spec(4, 'The bundle is signed by a key that a trusted key has retired (a retirement statement), or that signed rotations to two different keys (someone else holds it). Nothing was written.', 'Do not use this bundle: its key is no longer trusted, and may be in other hands. Fetch a fresh bundle from the server, signed by its current key (docs/keys.md).'),
  BUNDLE_SIGNATURE_INVALID: spec(4, 'The signature does not match the manifest for the key it names: the bundle was altered or the signature forged.', 'Do not use this bundle. Fetch a fresh copy from a trusted source.'),
  BUNDLE_HOST_MISMATCH: spec(4, 'The server answered with a correctly signed bundle of another host than the one asked for.', 'Do not use it: the server or something between is misconfigured or hostile. Check the host id and the server.'),
  BUNDLE_STALE: spec(4, 'A bundle fetched from the server does not carry, in its signed manifest, the nonce that this apply sent with its request: a replayed or cached answer (or a server too old to sign nonces). Nothing was written.', 'Do not use it: something between this machine and the server answered with an old, correctly signed bundle. Fetch again over a path you trust (HTTPS), and check that the server runs a rear-update that signs nonces.'),
  BUNDLE_MEMBER_UNLISTED: spec(4, 'The archive contains a member that the manifest does not list.', 'Do not use this bundle: it was altered after signing.'),
  BUNDLE_MEMBER_MISMATCH: spec(4, 'A member differs from its manifest record (type, mode, owner, size, sha256, link target or time).', 'Do not use this bundle: it was altered after signing.'),
  BUNDLE_MEMBER_MISSING: spec(4, 'The manifest lists an entry that the archive does not contain.', 'Do not use this bundle: it is truncated or altered.'),
  BUNDLE_MEMBER_DUPLICATE: spec(4, 'The same path appears twice in the archive.', 'Re-create the archive so that each path appears once.'),
  // 5: a member breaks a safe-extraction rule (docs/safe-extraction.md)
  ENTRY_PATH_ABSOLUTE: spec(5, 'A member name is absolute (after PAX and GNU long-name headers are applied).', 'Re-create the archive with paths relative to / (tar -C / ...).'),
  ENTRY_PATH_TRAVERSAL: spec(5, 'A member name contains a `..` component.', 'Re-create the archive without `..` in names.'),
  ENTRY_PATH_INVALID: spec(5, 'A member name is empty, contains NUL or `.` components in the middle, or is otherwise not a plain relative path.', 'Re-create the archive.'),
  ENTRY_PATH_RESERVED: spec(5, 'A member would write into rear-update\'s own state directory (var/lib/rear-update).', 'Remove that path from the bundle.'),
  ENTRY_THROUGH_SYMLINK: spec(5, 'A member would be written through a symbolic link (one in the archive or one already in the root).', 'Remove the member, or make the bundle replace the link with a real directory.'),
  ENTRY_PARENT_NOT_DIRECTORY: spec(5, 'A member\'s parent is a file (in the archive or in the root), not a directory.', 'Fix the archive layout.'),
  ENTRY_TYPE_REFUSED: spec(5, 'A member is a device node, FIFO, socket or another type rear-update never installs.', 'Remove it from the bundle (pack --exclude).'),
  ENTRY_MODE_REFUSED: spec(5, 'A member is setuid/setgid or group/world-writable.', 'Fix the mode at the source (chmod go-w, u-s, g-s) or exclude the member.'),
  ENTRY_HARDLINK_REFUSED: spec(5, 'A hard link does not point at a regular file placed earlier by the same archive.', 'Re-create the archive without such links.'),
  // 6: limits (defaults sized for a rescue system living in RAM)
  LIMIT_BYTES: spec(6, 'The unpacked size exceeds --max-bytes.', 'Raise --max-bytes if the bundle is legitimate.'),
  LIMIT_ENTRIES: spec(6, 'The number of members exceeds --max-entries.', 'Raise --max-entries if the bundle is legitimate.'),
  LIMIT_NAME: spec(6, 'A member name (or one of its components) is longer than allowed.', 'Shorten the name.'),
  LIMIT_DEPTH: spec(6, 'A member is nested deeper than allowed.', 'Flatten the layout.'),
  LIMIT_RATIO: spec(6, 'The data expands far more than real configuration does (a decompression bomb).', 'Do not use this bundle; if it is legitimate, raise --max-ratio.'),
  // 7: network
  DOWNLOAD_FAILED: spec(7, 'The bundle could not be downloaded after all retries (connection refused, reset, timeout, 5xx).', 'Check the network and the server; retry.'),
  DOWNLOAD_REFUSED: spec(7, 'The server answered with a 4xx status; this is final and not retried.', 'Read the server\'s message: wrong id, missing or wrong token, no such host.'),
  // 8: the root and its transactions
  ROOT_INVALID: spec(8, 'The --root directory does not exist or is not a directory.', 'Create it or fix the path.'),
  ROOT_CROSS_DEVICE: spec(8, 'A target lies on a different file system than rear-update\'s state directory, so it cannot be committed by rename.', 'Apply into a root that is one file system (as a rescue system is), or mount accordingly.'),
  NO_SPACE: spec(8, 'Not enough free space: in the root\'s file system to stage a bundle (apply: checked before writing, or the disk filled while staging), or in the server\'s data directory (a publish or a recovery-log upload; HTTP 507).', 'Free space on that file system. apply changed nothing; a refused publish stored nothing; a log upload keeps what was written before the disk filled.'),
  LOCKED: spec(8, 'Another rear-update process holds the lock on this root.', 'Wait for it to finish. If none is running, the lock of a dead process is taken over automatically.'),
  NOTHING_TO_ROLL_BACK: spec(8, 'There is no committed apply to roll back.', 'Nothing to do.'),
  JOURNAL_INVALID: spec(8, 'A transaction journal is unreadable, so an interrupted apply cannot be finished or undone automatically.', 'Inspect var/lib/rear-update/txn/ under the root; restore from the backup/ folder by hand.'),
  PACK_ENTRY_REFUSED: spec(9, 'The tree to pack contains entries that apply would refuse (device, FIFO, socket, setuid/setgid, group/world-writable).', 'Fix the mode, or leave them out with --exclude.'),
  PACK_SOURCE_CHANGED: spec(9, 'A file changed while it was being packed.', 'Run pack again when the tree is quiet.'),
  PACK_PATH_MISSING: spec(9, 'A path given with --path does not exist under the root, or none of the default paths does.', 'Check --root and --path.'),
  // 8: the server's store (metadata and blobs; docs/storage.md)
  HOST_UNKNOWN: spec(8, 'No host with that id is registered on the server.', 'Check the id with `rear-update admin host list`, or add the host with `admin host add`.'),
  VERSION_UNKNOWN: spec(8, 'The host has no bundle version with that number.', 'List the host\'s versions with `rear-update admin versions HOST`.'),
  TOKEN_UNKNOWN: spec(8, 'No token with that id exists.', 'List tokens with `rear-update admin token list`.'),
  KEY_UNKNOWN: spec(8, 'The server never signed with a key of that fingerprint (or it is the current key, which cannot be retired).', 'List the server\'s keys with `rear-update admin key list`; rotate first to retire the current key.'),
  PENDING_UNKNOWN: spec(8, 'No pending machine with that id (or MAC address) is recorded.', 'Check the id or MAC address the server reported for the waiting machine; a machine is pending only after it asked the server once.'),
  RECOVERY_UNKNOWN: spec(8, 'No recovery with that id is recorded.', 'List recoveries with `rear-update admin recoveries`.'),
  LOG_UNKNOWN: spec(8, 'No recovery log with that id is recorded.', 'List the host\'s logs with `rear-update admin logs HOST`.'),
  STORE_CONFLICT: spec(8, 'The change would break a uniqueness rule of the store: the host or token id exists already, or a MAC address belongs to another host.', 'Read the conflicting value and owner in the message; change or remove it there first.'),
  STORE_INVALID: spec(8, 'A value given to the store is malformed: an id, MAC address, UUID, hostname, token scope, sha256 or manifest that does not have the documented form.', 'Fix the value named in the message (docs/storage.md lists the accepted forms).'),
  STORE_SCHEMA: spec(8, 'The metadata database cannot be brought to this program\'s schema: a migration failed, or the database was written by a newer rear-update.', 'Run the newest rear-update against this data directory, or restore the database from a backup.'),
  STORE_BUSY: spec(8, 'The metadata database stayed locked by another process for longer than the busy timeout, or (PostgreSQL) the connection to it was lost or refused during service (HTTP 503 with Retry-After).', 'Retry; the server recovers by itself when the database answers again. If it persists, look for another process holding the database in a long transaction, or for PostgreSQL being down.'),
  STORE_CORRUPT: spec(8, 'The metadata database is damaged: the SQLite file is damaged or not an SQLite database, or PostgreSQL reports data corruption.', 'Restore it from a backup; for SQLite, `sqlite3 FILE .recover` may salvage its contents.'),
  STORE_UNREACHABLE: spec(8, 'The PostgreSQL metadata database (`serve --db`) could not be reached at start, or refused the connection (authentication, no such database). The server does not start; once running, a lost database is STORE_BUSY (HTTP 503) until it is back.', 'Check the URL the message names (its password is not shown), that PostgreSQL is running and reachable from this machine, and the user, password and database name.'),
  BLOB_MISSING: spec(8, 'A bundle referenced by the metadata is not in the blob store.', 'Restore the blob directory from a backup, or publish the host again.'),
  BLOB_DIGEST_MISMATCH: spec(8, 'Data being stored does not have the sha256 or size it was announced with; nothing was stored.', 'Send it again; if it keeps failing, the data is altered on the way.'),
  BLOB_INPUT_FAILED: spec(8, 'The data being stored ended with an error (an upload cut off, its source failed); nothing was stored.', 'Send it again.'),
  STORE_INCONSISTENT: spec(8, '`rear-update serve --check` found the server\'s store inconsistent: a version whose bundle data is missing or has the wrong size or sha256, a gap in a host\'s version numbers, a pin to a version that does not exist, a recovery log shorter than its record, or damage that SQLite itself reports.', 'Read the findings it lists; restore the data directory from a backup, or publish the affected hosts again.'),
  // layers (hardware classes; docs/layers.md)
  LAYER_UNKNOWN: spec(8, 'No layer with that class and name is on the server.', 'List the layers with `rear-update admin layers [CLASS]`.'),
  LAYER_CONFLICT: spec(8, 'Layers cannot be composed: two layers of one class with the same priority carry the same path differently, or one layer has a directory where a later one has a file (or the other way round). Nothing was stored or served.', 'Give one of the layers another priority (publish --priority N), or remove the path from one of them; the message names both layers and the path.'),
  LAYER_PATH_RESERVED: spec(8, 'A layer would own a host\'s own configuration (etc/rear, var/lib/rear, or a directory above them): a class layer may add files there, but never own (and so remove) what each host publishes.', 'Pack the layer with narrower --path values (for example etc/rear/drivers.conf.d is a file path, not an owned tree); host configuration belongs in each host\'s own publish.'),
  // offline exports (docs/export.md): the signed index and the bundles beside it
  EXPORT_INDEX_INVALID: spec(4, 'An offline export\'s index.json is missing, malformed, not in its one canonical encoding, or its signature by the key it names does not verify: edited after the server signed it, or an export cut off before its index was written. Nothing was written.', 'Do not use this export: write a fresh one with `rear-update admin export DIR`, or fetch from the server.'),
  EXPORT_TAMPERED: spec(4, 'A bundle file of an offline export does not match what the signed index says of it (sha256, size, version, export time), or is missing: swapped for another host\'s or another version, altered, or truncated. (admin export: the server sent other bytes than it signed, e.g. a new version was published meanwhile.) Nothing was written.', 'Do not use this bundle: write a fresh export (`rear-update admin export DIR`); if admin export said so, run it again.'),
  EXPORT_HOST_UNKNOWN: spec(8, 'The offline export has no bundle for this machine: the host given is not in its index, or this machine\'s facts (MACs, DMI UUID and serial, hostname) name no host of it, or name several (never guessed). Nothing was written.', 'Give the host id (`rear-update apply --from DIR HOST`) after checking which host this machine is; export that host (`admin export --host H`).'),
  EXPORT_TOO_OLD: spec(4, 'The offline export is older than REAR_UPDATE_EXPORT_MAX_AGE (default 7d) by this machine\'s clock, and no one confirmed it on a terminal. Nothing was written.', 'Use a newer export; or, when this one is the best there is, confirm on the terminal or pass --accept-old-export.'),
  // 10: hardware and activation (the steps after the commit; docs/layers.md)
  KERNEL_MISMATCH: spec(10, 'A layer declares that it needs a kernel release that is not the one running (or the one given with --kernel). Nothing was written.', 'Boot the kernel the layer was made for, give the right --kernel, or publish a layer for this release (`uname -r`).'),
  HOOKS_UNTRUSTED: spec(10, 'The bundle declares hooks (programs run as root before or after the commit) but is not signed by a trusted key. Nothing was written.', 'Sign the bundle (pack --key, or fetch it from the server), or, for a bundle whose origin you trust, pass --allow-hooks.'),
  HOOK_VETO: spec(10, 'A pre hook of the bundle exited with a failure status, which vetoes the apply. Nothing was committed.', 'Read the hook\'s message in the output and the apply log; fix what it reports, or publish a layer whose hook accepts this machine.'),
  ACTIVATION_FAILED: spec(10, 'The files were installed, but an activation step failed (depmod, udev, modprobe or a post hook), or did not finish within its timeout. The message names the step and its output.', 'The files stay installed: fix the cause and run the step by hand, or undo everything with `rear-update rollback` (which also re-runs depmod).'),
  // The server's HTTP interface (src/server/http-errors.ts maps each to an HTTP status) and its clients
  AUTH_REQUIRED: spec(7, 'The request carries no token, and the route needs one.', 'Pass --token or set REAR_UPDATE_TOKEN (HTTP: Authorization: Bearer T, the raw token, or the password of Basic credentials).'),
  AUTH_INVALID: spec(7, 'The token is malformed, unknown or revoked.', 'Check the token; list tokens with `rear-update admin token list`, create one with `admin token create`.'),
  AUTH_EXPIRED: spec(7, 'The token has expired: it was created with --expires and that time has passed (the message names it).', 'Create a new token (`rear-update admin token create ... --expires DURATION`) and use that one.'),
  AUTH_USED_UP: spec(7, 'The token was created with --uses N and has started all of its N bundle downloads; only a resume of the download that spent the last use, and recovery-log uploads, are still accepted.', 'Create a new token for the next recovery (`rear-update admin token create --fetch HOST --uses 1`).'),
  PENDING_LIMIT: spec(7, 'The server records no more pending machines for now: this token, this address or the whole server has reached its limit of open pending records (HTTP 429 with Retry-After). A machine already pending is never refused.', 'Wait and ask again (apply does so within --wait); an admin assigns the waiting machines (`rear-update admin pending`), or raises --pending-per-token, --pending-per-address or --pending-max.'),
  SESSION_INVALID: spec(7, 'The console session is missing, expired (idle or absolute), signed out, or its token was revoked.', 'Sign in again at the console\'s first page with a valid token.'),
  CSRF_INVALID: spec(7, 'A state-changing console request did not carry the session\'s CSRF token, or came from another origin (Origin / Sec-Fetch-Site). Nothing was changed.', 'Reload the page and repeat the action from the console itself; scripts use the JSON API with a bearer token instead.'),
  FORBIDDEN: spec(7, 'The token is valid but its scope does not cover this host or route.', 'Use a token for this host (or its hardware class), or an admin token.'),
  REQUEST_INVALID: spec(2, 'A request parameter, query or body is malformed.', 'Read the message: it names the parameter and the accepted form.'),
  ROUTE_UNKNOWN: spec(2, 'No such route on the server.', 'Check the URL against docs/server.md.'),
  REQUEST_TIMEOUT: spec(7, 'The server closed a request that did not arrive in time: nothing arrived for --idle-timeout (a recovery-log upload: --log-idle-timeout), or the body was not complete within --request-timeout (HTTP 408).', 'Retry over a better connection; if uploads are legitimately that slow, raise the server setting the message names.'),
  UPLOAD_TOO_LARGE: spec(6, 'An upload is larger than the server accepts (--max-upload).', 'Make the bundle smaller or raise the server\'s --max-upload.'),
  NO_BUNDLE: spec(8, 'The host has no published bundle yet.', 'Run `rear-update publish` on the host first.'),
  HOST_PENDING: spec(7, 'The server does not know this machine yet: it is recorded as pending and no admin has assigned it to a host within --wait.', 'Ask an admin to run `rear-update admin assign PENDING-ID HOST`, or give the host id explicitly.'),
  SERVER_REFUSED: spec(7, 'The server answered a request with an error (4xx/5xx) that another try will not cure.', 'Read the server\'s code and message in the output.'),
  SERVER_UNREACHABLE: spec(7, 'The server could not be reached (connection refused, reset, timeout) after the retries.', 'Check --server, the network and that `rear-update serve` is running.'),
  CONFIG_INVALID: spec(3, 'A setting (config file, environment variable or flag) has a malformed value, or the data directory is unusable.', 'Read the message: it names the setting and where it came from.'),
  SELF_UPDATE_UNSUPPORTED: spec(2, '`self-update` replaces the one-file executable it runs as; this rear-update runs otherwise (under node, from the npm package).', 'Update the npm package, or install the .deb/.rpm or the executable from the server\'s GET /download/.'),
  SELF_UPDATE_REFUSED: spec(4, 'The executable `self-update` downloaded does not match the server\'s signature by the pinned key (REAR_UPDATE_PUBKEY), or its sha256 or size differ from what the server announced, or it does not run. Nothing was replaced.', 'Do not install it by hand: the download was altered, or the server\'s key is not the pinned one (after a key rotation, pin the new key: docs/operations.md).'),
  IMAGE_TOKEN_SCOPE: spec(4, '`install-rear` was given a token that is not a fetch token (admin, publish, view, operate): it would be written into the rescue image, which anyone holding the ISO can read.', 'Give the image a fetch token: admin token create --fetch HOST, or --fetch-class CLASS for one image per hardware type. The host\'s publish token stays in /etc/rear-update/token, which the image never carries.'),
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export type ErrorContext = Record<string, string | number | boolean | null | undefined | string[]>;

/** An expected failure: a stable code, a human message, and machine-readable context. */
export class RuError extends Error {
  readonly code: ErrorCode;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}) {
    super(message);
    this.name = 'RuError';
    this.code = code;
    this.context = context;
  }

  get exitStatus(): number {
    return ERRORS[this.code].exit;
  }

  toJSON(): { code: ErrorCode; message: string; context: ErrorContext } {
    return { code: this.code, message: this.message, context: this.context };
  }
}

export const isRuError = (e: unknown): e is RuError => e instanceof RuError;

/**
 * Adapters translate foreign errors here (verdaccio's s3Errors idea): a full disk is a
 * documented refusal, not a stack trace. Anything else without a code of ours is IO_ERROR.
 */
export function fromSystemError(e: unknown, what: string): RuError {
  if (isRuError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOSPC' || err?.code === 'EDQUOT') {
    return new RuError('NO_SPACE', `no space left while ${what}`, { errno: err.code, path: err.path });
  }
  if (err?.code) return new RuError('IO_ERROR', `${what}: ${err.message}`, { errno: err.code, path: err.path });
  return new RuError('INTERNAL', `${what}: ${err?.message ?? String(e)}`);
}
