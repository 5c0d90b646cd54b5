// HTML for the console, escaped by a library (hono's `html` tagged template), never by hand:
// every interpolated string is escaped, arrays are joined, and only values made by `html` or
// `raw` pass through unescaped. Everything a rescue machine reports (host names, facts, log
// lines) goes through here as a plain string and so renders as inert text.

import { html as honoHtml, raw as honoRaw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';

/** A piece of HTML that is already safe to send. */
export type Html = HtmlEscapedString;

/** What may be interpolated: text (escaped), numbers, safe HTML, lists of these; null, undefined and booleans render nothing. */
export type HtmlValue = string | number | boolean | null | undefined | Html | readonly HtmlValue[];

/** The escaping tagged template. Synchronous: a Promise among the values is a programming error. */
export function html(strings: TemplateStringsArray, ...values: readonly HtmlValue[]): Html {
  const out = honoHtml(strings, ...values);
  if (out instanceof Promise) throw new Error('console html: asynchronous values are not supported');
  return out;
}

/** Marks text as HTML without escaping it: only for markup this program wrote itself. */
export const raw = (text: string): Html => honoRaw(text);

/** Several pieces one after another (optionally with a separator). */
export function joinHtml(items: readonly Html[], sep?: Html): Html {
  if (sep === undefined) return html`${items}`;
  return html`${items.flatMap((it, i) => (i === 0 ? [it] : [sep, it]))}`;
}
