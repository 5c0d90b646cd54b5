// Recovery-log lines as HTML: ANSI colours become escaped text in spans with classes (never
// style attributes: the console's CSP forbids inline styles; assets/live.css maps the classes
// to colours). A library (ansi-to-html, escapeXML) does the parsing and the escaping; we only
// rename the tags it writes, whose shapes we know, because all text it emits is escaped.

import Convert from 'ansi-to-html';

// Sentinel colour names: the library writes `color:c3`, which we turn into class ansi-fg3.
const COLORS: Record<number, string> = Object.fromEntries(Array.from({ length: 256 }, (_, i) => [i, `c${i}`]));

const converter = (): Convert => new Convert({ escapeXML: true, fg: 'default', bg: 'default', colors: COLORS, newline: false, stream: false });

// Escape sequences that are not colours (cursor moves, erase line, window titles) would
// otherwise leave debris such as "]0;title" in the text: removed before conversion.
/* eslint-disable no-control-regex */
const OSC = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?/g;
const CSI_OTHER = /\x1b\[[0-?]*[ -/]*[@-ln-~]/g;
const ESC_OTHER = /\x1b(?![[\]])[@-_]?/g;
// Control characters other than tab and ESC say nothing to a reader and may confuse a terminal
// of a reader who downloads a copy; on the page they are dropped.
const CONTROL = /[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f]/g;
const ANSI_ANY = /\x1b\[[0-?]*[ -/]*[@-~]/g;
/* eslint-enable no-control-regex */

/** A line as a terminal would end up showing it: what follows the last carriage return (progress bars). */
function lastRewrite(line: string): string {
  const t = line.endsWith('\r') ? line.slice(0, -1) : line;
  const cr = t.lastIndexOf('\r');
  return cr < 0 ? t : t.slice(cr + 1);
}

/** The line without escape sequences or control characters: what search and the error finder read. */
export function plainText(line: string): string {
  return lastRewrite(line).replace(OSC, '').replace(ANSI_ANY, '').replace(/\x1b/g, '').replace(CONTROL, ''); // eslint-disable-line no-control-regex
}

function styleClasses(style: string): string {
  const out: string[] = [];
  for (const decl of style.split(';')) {
    const m = /^(color|background-color):c(\d{1,3})$/.exec(decl);
    if (m) out.push(`ansi-${m[1] === 'color' ? 'fg' : 'bg'}${m[2]}`);
    else if (decl === 'display:none') out.push('ansi-hidden');
    else if (decl === 'text-decoration:overline') out.push('ansi-overline');
    else if (decl === 'font-weight:normal') out.push('ansi-normal');
    // Anything else (24-bit colours "#rrggbb", the default colour) keeps the text's colour.
  }
  return out.join(' ');
}

/** One log line (without its newline) as safe HTML: escaped text, colours as classes. */
export function ansiLineHtml(line: string): string {
  const cleaned = lastRewrite(line).replace(OSC, '').replace(CSI_OTHER, '').replace(ESC_OTHER, '').replace(CONTROL, '');
  const out = converter().toHtml(cleaned);
  // Only the library's own tags contain '<' here: it escaped every character of the text.
  return out
    .replace(/<span style="([^"<>]*)">/g, (_m, style: string) => {
      const cls = styleClasses(style);
      return cls ? `<span class="${cls}">` : '<span>';
    })
    .replace(/<blink>/g, '<span class="ansi-blink">')
    .replace(/<\/blink>/g, '</span>')
    .replace(/<strike>/g, '<s>')
    .replace(/<\/strike>/g, '</s>');
}
