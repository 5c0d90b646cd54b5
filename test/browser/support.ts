// The console's browser-test harness: a real server on loopback (startServer, real SQLite),
// Debian's Chromium driven by playwright-core, and helpers every console test needs — sign in,
// tokens of each scope through the admin API, axe-core checks, screenshots for docs/console/.
// `npx playwright install` cannot download here, so the system browser is used.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { pack } from '../../src/cli/commands/pack.ts';
import { openSqliteMetadata } from '../../src/adapters/storage/sqlite-metadata.ts';
import type { MetadataStore } from '../../src/core/store/metadata.ts';
import { loadConfig, type ConfigFlags } from '../../src/server/config.ts';
import { layout, prepareDataDir } from '../../src/server/data-dir.ts';
import { startServer, type Running } from '../../src/server/serve.ts';
import { cleanup, makeTree, REPO, tempDir, type TreeSpec } from '../helpers.ts';

export const CHROMIUM = '/usr/bin/chromium';
/** Generous: the tests run on a loaded two-core machine. */
export const WAIT_MS = 60_000;
export const VIEWPORT = { width: 1280, height: 800 };

export interface ConsoleServer {
  readonly srv: Running;
  readonly url: string;
  readonly admin: string;
  readonly data: string;
  readonly work: string;
  /** A JSON request with the admin token (or another). */
  api(method: string, path: string, o?: { body?: unknown; token?: string; raw?: Buffer }): Promise<{ status: number; json: Record<string, unknown>; text: string }>;
  /** A new token of that scope (through the admin API): the secret text. */
  token(scope: string, label?: string): Promise<string>;
  /** Adds a host through the admin API. */
  host(id: string, fields?: Record<string, unknown>): Promise<void>;
  /** Packs `tree` for `host` and publishes it: the new version number. */
  publish(host: string, tree: TreeSpec): Promise<number>;
  /** Packs `tree` (its `paths`) as layer `name` of class `cls` ('*': every class) and publishes it: the new version. */
  publishLayer(cls: string, name: string, tree: TreeSpec, paths: string[], priority?: number): Promise<number>;
  /** Moves the server's clock forward. */
  advance(ms: number): void;
  close(): Promise<void>;
}

export interface StartOptions {
  /**
   * Fills the store before the server opens it (real SQLite, the same file): what the admin API
   * cannot make quickly (10,000 hosts) or at all (an audit event with a hostile detail).
   */
  readonly seed?: (meta: MetadataStore) => Promise<void>;
}

/**
 * Starts a server on 127.0.0.1 with a fresh data directory; `flags` as `serve` takes them
 * (e.g. sessionIdle: '10m'). The server's clock (and its store's) runs `advance`d ahead of the
 * real one, so expiry tests move time instead of waiting.
 */
export async function startConsoleServer(flags: ConfigFlags = {}, o: StartOptions = {}): Promise<ConsoleServer> {
  const work = tempDir('ru-console-');
  const data = join(work, 'data');
  let offset = 0;
  const now = (): Date => new Date(Date.now() + offset);
  if (o.seed) {
    const l = layout(data);
    prepareDataDir(l);
    const meta = await openSqliteMetadata(l.database, { now });
    try {
      await o.seed(meta);
    } finally {
      await meta.close();
    }
  }
  const srv = await startServer(loadConfig({ data, listen: '127.0.0.1:0', ...flags }, {}), { log: false, now });
  const admin = readFileSync(join(data, 'admin.token'), 'utf8').trim();
  let n = 0;
  const api: ConsoleServer['api'] = async (method, path, o = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${o.token ?? admin}` };
    let body: Blob | string | undefined;
    if (o.raw) {
      headers['content-type'] = 'application/gzip';
      body = new Blob([new Uint8Array(o.raw)]);
    } else if (o.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(o.body);
    }
    const r = await fetch(`${srv.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await r.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      /* not JSON */
    }
    return { status: r.status, json, text };
  };
  const s: ConsoleServer = {
    srv, url: srv.url, admin, data, work, api,
    async token(scope, label) {
      const r = await api('POST', '/api/v1/tokens', { body: { scope, ...(label ? { label } : {}) } });
      assert.equal(r.status, 201, r.text);
      return r.json.token as string;
    },
    async host(id, fields = {}) {
      const r = await api('POST', '/api/v1/hosts', { body: { id, ...fields } });
      assert.equal(r.status, 201, r.text);
    },
    async publish(host, tree) {
      const root = join(work, `tree-${++n}`);
      makeTree(root, tree);
      const file = join(work, `bundle-${n}.tar.gz`);
      await pack({ root, host, output: file });
      const r = await api('POST', `/api/v1/hosts/${host}/versions`, { raw: readFileSync(file) });
      assert.equal(r.status, 201, r.text);
      return ((r.json.version as Record<string, unknown>).version as number) ?? NaN;
    },
    async publishLayer(cls, name, tree, paths, priority) {
      const root = join(work, `tree-${++n}`);
      makeTree(root, tree);
      const file = join(work, `layer-${n}.tar.gz`);
      await pack({ root, output: file, layer: name, class: cls, path: paths, ...(priority !== undefined ? { priority } : {}) });
      const r = await api('POST', `/api/v1/layers/${encodeURIComponent(cls)}/${name}/versions${priority !== undefined ? `?priority=${priority}` : ''}`, { raw: readFileSync(file) });
      assert.equal(r.status, 201, r.text);
      return ((r.json.version as Record<string, unknown>).version as number) ?? NaN;
    },
    advance(ms) {
      offset += ms;
    },
    async close() {
      await srv.close();
      cleanup(work);
    },
  };
  return s;
}

export async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu'], timeout: WAIT_MS });
}

/**
 * A fresh browser context (its own cookies). `bypassCSP` only for the axe checks, which inject
 * axe-core as an inline script; every other test runs under the server's real CSP.
 */
export async function newPage(browser: Browser, o: { bypassCSP?: boolean } = {}): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: VIEWPORT, bypassCSP: o.bypassCSP ?? false });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(WAIT_MS);
  const page = await context.newPage();
  return { context, page };
}

/** Signs in through the form, as a person would; waits for the page after it. */
export async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/sign-in`);
  await page.getByLabel('Token').fill(token);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/sign-in')), page.getByRole('button', { name: 'Sign in' }).click()]);
}

export interface AxeViolation {
  readonly id: string;
  readonly impact: string | null;
  readonly help: string;
  readonly nodes: readonly string[];
}

/** Runs axe-core in the page; returns the serious and critical violations (the context must bypass CSP). */
export async function axeCheck(page: Page): Promise<AxeViolation[]> {
  const source = readFileSync(join(REPO, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  await page.addScriptTag({ content: source });
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run: (ctx: unknown, o: unknown) => Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[] }> } }).axe;
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => JSON.stringify(n.target)) }));
  });
  return result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** A full-page screenshot for the documentation: docs/console/NAME.png. */
export async function screenshot(page: Page, name: string): Promise<void> {
  const dir = join(REPO, 'docs', 'console');
  mkdirSync(dir, { recursive: true });
  await page.setViewportSize(VIEWPORT);
  writeFileSync(join(dir, `${name}.png`), await page.screenshot({ fullPage: true, animations: 'disabled' }));
}

/** Records every dialog (alert, confirm) a page opens: an XSS payload that ran would show up here. */
export function watchDialogs(page: Page): string[] {
  const seen: string[] = [];
  page.on('dialog', (d) => {
    seen.push(d.message());
    void d.dismiss();
  });
  return seen;
}

/** The session cookie of a context, if any. */
export async function sessionCookie(context: BrowserContext): Promise<{ name: string; value: string; httpOnly: boolean; sameSite: string; secure: boolean; path: string } | null> {
  const all = await context.cookies();
  return all.find((c) => c.name === 'ru_session' || c.name === '__Host-ru_session') ?? null;
}
