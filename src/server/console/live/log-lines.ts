// Recovery logs cut into whole lines for the console: byte offsets stay exact (a live reader
// resumes at the byte after the last whole line it got, so nothing is lost or shown twice),
// and the lines that say ReaR failed are found so a reader can jump to the first of them.

import { ansiLineHtml, plainText } from './ansi.ts';

/**
 * What ReaR writes when it fails: `ERROR: ...` from its Error function, "Aborting due to an
 * error", "Error exit of rear recover (PID n)", a BugError's "BUG BUG BUG", and a shell's
 * "line N: ...: command not found" under set -e. Matched on the text without colours.
 */
const ERROR_PATTERNS: readonly RegExp[] = [
  /\bERROR:/,
  /\bAborting due to an error\b/i,
  /\bError exit of\b/,
  /\bBUG BUG BUG\b/,
  /\bBugError\b/,
  /: line \d+: .*command not found$/,
];

export const isErrorLine = (plain: string): boolean => ERROR_PATTERNS.some((p) => p.test(plain));

/** Index of the first line that says ReaR failed, or -1. */
export function firstErrorIndex(lines: readonly string[]): number {
  return lines.findIndex((l) => isErrorLine(plainText(l)));
}

/** A line ready for the page: its HTML (escaped, colours as classes) and whether it is an error. */
export interface RenderedLine {
  readonly html: string;
  readonly error: boolean;
}

export const renderLine = (line: string): RenderedLine => ({ html: ansiLineHtml(line), error: isErrorLine(plainText(line)) });

/**
 * Cuts a byte stream into whole lines. `offset` is the byte after the last whole line given
 * out: where a reader that has seen those lines continues. Lines are decoded as UTF-8 only
 * once whole, so a character split between chunks is never garbled.
 */
export class LineSplitter {
  #held: Buffer = Buffer.alloc(0);
  #offset: number;

  constructor(offset: number) {
    this.#offset = offset;
  }

  get offset(): number {
    return this.#offset;
  }

  /** The lines completed by this chunk (without their newlines). */
  push(chunk: Buffer): string[] {
    const buf = this.#held.length ? Buffer.concat([this.#held, chunk]) : chunk;
    const end = buf.lastIndexOf(0x0a);
    if (end < 0) {
      this.#held = buf;
      return [];
    }
    const whole = buf.subarray(0, end + 1);
    this.#held = Buffer.from(buf.subarray(end + 1));
    this.#offset += whole.length;
    return splitLines(whole);
  }

  /** At the end of a log: the unfinished last line, if any, counted as given out. */
  end(): string[] {
    if (this.#held.length === 0) return [];
    const rest = this.#held;
    this.#held = Buffer.alloc(0);
    this.#offset += rest.length;
    return [rest.toString('utf8')];
  }
}

/** Bytes that end with a newline (or a finished log's last bytes) as lines, without newlines. */
export function splitLines(bytes: Buffer): string[] {
  if (bytes.length === 0) return [];
  const text = bytes.toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}
