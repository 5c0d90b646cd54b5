// Man pages generated from the CLI's own help (issue 15): rear-update(8), and one page per
// top-level command (rear-update-apply(8), ...), whose nested subcommands (admin host add, key
// rotate, ...) are sections of that page. Everything comes from the commander program that the
// CLI runs (src/cli/main.ts buildProgram()): descriptions, usage, arguments, options, and the
// text each command adds after its help, so a page cannot drift from `--help`.
//
// Usage: node --import tsx scripts/man.ts OUTDIR   (writes OUTDIR/*.8; scripts/package.ts
// calls manPages() directly)

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command, Help } from 'commander';

export interface ManPage {
  /** e.g. rear-update-apply.8 */
  readonly file: string;
  readonly roff: string;
}

export interface ManOptions {
  readonly version: string;
  /** The date on every page's .TH line (YYYY-MM-DD): the release's, so that builds are reproducible. */
  readonly date: string;
  /** Extra sections for rear-update(8), e.g. FILES, as [heading, roff body]. */
  readonly extra?: readonly (readonly [string, string])[];
}

/** Loads the CLI's program without running it (src/cli/main.ts LIBRARY_MODE). */
export async function loadProgram(): Promise<Command> {
  (globalThis as Record<symbol, unknown>)[Symbol.for('rear-update.cli.library-mode')] = true;
  const { buildProgram } = await import('../src/cli/main.ts');
  return buildProgram();
}

/** Text to roff: backslashes, minus signs (options must stay copy-pasteable), control lines. */
export function roffEscape(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

const quoted = (s: string): string => `"${s.replace(/"/g, '""')}"`;

/** The command's words from the program down: ['rear-update', 'admin', 'host', 'add']. */
function commandPath(cmd: Command): string[] {
  const words: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) words.unshift(c.name());
  return words;
}

/** What the command adds after its help (addHelpText 'after'), as `--help` prints it. */
function afterText(cmd: Command): string {
  let full = '';
  cmd.configureOutput({ writeOut: (s) => (full += s), getOutHasColors: () => false, getOutHelpWidth: () => 1000 });
  cmd.outputHelp();
  const core = cmd.helpInformation();
  const rest = full.startsWith(core) ? full.slice(core.length) : '';
  return rest.replace(/^\n+/, '').replace(/\s+$/, '');
}

/**
 * The after-help text: prose paragraphs are filled; indented lines (examples, tables) are kept
 * as they are, in no-fill mode, so that their columns survive.
 */
function renderFreeText(text: string): string {
  const out: string[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const lines = para.split('\n');
    out.push('.PP');
    let prose: string[] = [];
    let verbatim: string[] = [];
    const flushProse = (): void => {
      if (prose.length) out.push(roffEscape(prose.join(' ')));
      prose = [];
    };
    const flushVerbatim = (): void => {
      if (verbatim.length) out.push('.RS 2', '.nf', ...verbatim.map((l) => roffEscape(l.replace(/^ {2}/, ''))), '.fi', '.RE');
      verbatim = [];
    };
    for (const line of lines) {
      if (/^\s/.test(line)) {
        flushProse();
        verbatim.push(line);
      } else {
        flushVerbatim();
        // A line such as "Examples:" before indented lines stands alone.
        prose.push(line.trim());
        if (/:$/.test(line.trim())) {
          flushProse();
          out.push('.br');
        }
      }
    }
    flushProse();
    flushVerbatim();
  }
  // A .br right before .RS or at the end says nothing.
  return out.filter((l, i) => !(l === '.br' && (out[i + 1] === '.RS 2' || out[i + 1] === undefined))).join('\n');
}

/** SYNOPSIS, DESCRIPTION-ish body, ARGUMENTS, OPTIONS and COMMANDS of one command, at `level`. */
function commandBody(cmd: Command, help: Help, heading: (title: string) => string): string[] {
  const out: string[] = [];
  const words = commandPath(cmd);
  out.push(heading('SYNOPSIS'), `.B ${roffEscape(words.join(' '))}`, roffEscape(cmd.usage()));
  const description = help.commandDescription(cmd);
  if (description) out.push(heading('DESCRIPTION'), roffEscape(description));
  const args = help.visibleArguments(cmd);
  if (args.length) {
    out.push(heading('ARGUMENTS'));
    for (const a of args) out.push('.TP', `.I ${roffEscape(help.argumentTerm(a))}`, roffEscape(help.argumentDescription(a)));
  }
  const options = help.visibleOptions(cmd);
  if (options.length) {
    out.push(heading('OPTIONS'));
    for (const o of options) out.push('.TP', `.B ${roffEscape(help.optionTerm(o))}`, roffEscape(help.optionDescription(o)));
  }
  const subs = help.visibleCommands(cmd);
  if (subs.length) {
    out.push(heading('COMMANDS'));
    for (const s of subs) out.push('.TP', `.B ${roffEscape(help.subcommandTerm(s))}`, roffEscape(help.subcommandDescription(s)));
  }
  const after = afterText(cmd);
  if (after) out.push(heading('NOTES'), renderFreeText(after));
  return out;
}

/** The nested subcommands of `cmd`, depth first (not `help`, which commander adds). */
function descendants(cmd: Command): Command[] {
  return cmd.commands.filter((c) => !isHidden(c)).flatMap((c) => [c, ...descendants(c)]);
}

const isHidden = (c: Command): boolean => (c as unknown as { _hidden?: boolean })._hidden === true;

function header(name: string, description: string, o: ManOptions): string[] {
  return [
    `.\\" Generated by scripts/man.ts from \`${name.replace(/-/g, ' ')} --help\`; do not edit.`,
    `.TH ${quoted(name.toUpperCase())} 8 ${quoted(o.date)} ${quoted(`rear-update ${o.version}`)} "System Administration"`,
    // Left-aligned, never hyphenated: option names and paths must read as they are typed.
    '.ad l',
    '.nh',
    '.SH NAME',
    `${roffEscape(name)} \\- ${roffEscape(description.split('\n')[0]!)}`,
  ];
}

/** Every page: rear-update.8 first, then one per visible top-level command. */
export function manPages(program: Command, o: ManOptions): ManPage[] {
  const help = program.createHelp();
  const top = program.commands.filter((c) => !isHidden(c) && c.name() !== 'help');
  const pageName = (c: Command): string => `rear-update-${c.name()}`;
  const seeAlso = (except: string): string =>
    ['rear-update', ...top.map(pageName)].filter((n) => n !== except).map((n) => `.BR \\%${roffEscape(n)} (8)`).join(',\n');

  const pages: ManPage[] = [];
  {
    const body = commandBody(program, help, (t) => `.SH ${t}`);
    // The command list points at each command's own page.
    const extra = (o.extra ?? []).flatMap(([h, b]) => [`.SH ${quoted(h)}`, b]);
    const roff = [...header('rear-update', program.description(), o), ...body, ...extra, '.SH "SEE ALSO"', seeAlso('rear-update'), ''].join('\n');
    pages.push({ file: 'rear-update.8', roff });
  }
  for (const cmd of top) {
    const name = pageName(cmd);
    const lines = [...header(name, cmd.description(), o), ...commandBody(cmd, help, (t) => `.SH ${t}`)];
    for (const sub of descendants(cmd)) {
      const title = commandPath(sub).slice(1).join(' ');
      lines.push(`.SH ${quoted(title.toUpperCase())}`, ...commandBody(sub, help, (t) => `.SS ${quoted(t.charAt(0) + t.slice(1).toLowerCase())}`));
    }
    lines.push('.SH "SEE ALSO"', seeAlso(name), '');
    pages.push({ file: `${name}.8`, roff: lines.join('\n') });
  }
  return pages;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const outDir = process.argv[2];
  if (!outDir) {
    console.error('usage: node --import tsx scripts/man.ts OUTDIR');
    process.exit(2);
  }
  const { VERSION } = await import('../src/cli/version.ts');
  const program = await loadProgram();
  mkdirSync(outDir, { recursive: true });
  for (const p of manPages(program, { version: VERSION, date: new Date().toISOString().slice(0, 10) })) writeFileSync(join(outDir, p.file), p.roff);
}
