// The console's hardware-class page (docs/layers.md): every class the hosts carry or a layer
// is published for, how many hosts it has, and the layers each host of it is composed with,
// in composition order, with their latest and served versions and pins.

import type { FastifyInstance } from 'fastify';
import type { Layer } from '../../core/store/metadata.ts';
import type { ServerContext } from '../context.ts';
import { time } from './common.ts';
import { html, type Html } from './html.ts';
import { page, sendPage } from './layout.ts';
import { pageUser } from './session.ts';

interface LayerRow {
  readonly layer: Layer;
  readonly latest: number | null;
  readonly served: number | null;
  readonly updated: string | null;
}

function layerTable(caption: string, rows: readonly LayerRow[]): Html {
  if (rows.length === 0) return html`<p class="muted">No layer: hosts get their own files only.</p>`;
  return html`<div class="table-wrap"><table>
<caption class="visually-hidden">${caption}</caption>
<thead><tr><th scope="col">Layer</th><th scope="col">Class</th><th scope="col" class="num">Priority</th><th scope="col" class="num">Latest version</th><th scope="col" class="num">Served version</th><th scope="col">Pinned</th><th scope="col">Last published</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><th scope="row"><code>${r.layer.name}</code></th><td>${r.layer.class === '*' ? 'every class' : r.layer.class}</td><td class="num">${r.layer.priority}</td><td class="num">${r.latest ?? html`<span class="muted">none</span>`}</td><td class="num">${r.served ?? ''}</td><td>${r.layer.pinned !== null ? html`<span class="badge warn">version ${r.layer.pinned}</span>` : ''}</td><td>${time(r.updated)}</td></tr>`)}</tbody></table></div>`;
}

export function classPages(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/classes', async (req, reply) => {
    const user = await pageUser(ctx, req, reply, 'view');
    if (!user) return reply;
    const [hosts, layers] = await Promise.all([ctx.meta.listHosts(), ctx.meta.listLayers()]);
    const counts = new Map<string | null, number>();
    for (const h of hosts) counts.set(h.class, (counts.get(h.class) ?? 0) + 1);
    const latest = new Map<string, { version: number; created: string } | null>();
    await Promise.all(
      layers.map(async (l) => {
        const v = await ctx.meta.latestLayerVersion(l.class, l.name);
        latest.set(`${l.class}/${l.name}`, v ? { version: v.version, created: v.created } : null);
      }),
    );
    const row = (l: Layer): LayerRow => {
      const v = latest.get(`${l.class}/${l.name}`) ?? null;
      return { layer: l, latest: v?.version ?? null, served: v === null ? null : (l.pinned ?? v.version), updated: v?.created ?? null };
    };
    const classNames = [...new Set([...hosts.map((h) => h.class), ...layers.map((l) => l.class)].filter((c): c is string => c !== null && c !== '*'))].sort();
    const every = layers.filter((l) => l.class === '*');
    // What a host of the class is composed of: the '*' layers and the class's own, in
    // composition order (priority, '*' first at equal priority, then name), as servedLayers orders them.
    const composed = (cls: string): Layer[] =>
      layers.filter((l) => l.class === cls || l.class === '*').sort((a, b) => a.priority - b.priority || (a.class === '*' ? 0 : 1) - (b.class === '*' ? 0 : 1) || a.name.localeCompare(b.name));
    const noClass = counts.get(null) ?? 0;
    const body = html`<h1>Hardware classes</h1>
<p class="hint">A host of a class is served its own files composed over the class's layers and the layers for every class (docs/layers.md). Lower priority composes first; a later layer wins a path both carry.</p>
<div class="table-wrap"><table>
<caption class="visually-hidden">Classes and their hosts</caption>
<thead><tr><th scope="col">Class</th><th scope="col" class="num">Hosts</th><th scope="col" class="num">Layers</th></tr></thead>
<tbody>${classNames.map((c) => html`<tr><th scope="row"><a href="#class-${c}">${c}</a></th><td class="num"><a href="/hosts?class=${encodeURIComponent(c)}">${counts.get(c) ?? 0}</a></td><td class="num">${composed(c).length}</td></tr>`)}
<tr><th scope="row">(no class)</th><td class="num"><a href="/hosts?class=-">${noClass}</a></td><td class="num">${every.length}</td></tr></tbody></table></div>
<h2 id="layers-every">Layers for every class</h2>
${layerTable('Layers for every class', every.map(row))}
${classNames.map((c) => html`<section aria-labelledby="class-${c}"><h2 id="class-${c}">Class <code>${c}</code></h2>
<p>${counts.get(c) ?? 0} host${(counts.get(c) ?? 0) === 1 ? '' : 's'} (<a href="/hosts?class=${encodeURIComponent(c)}">list</a>). Composed of, in order:</p>
${layerTable(`Layers of class ${c}`, composed(c).map(row))}</section>`)}`;
    return sendPage(reply, page(user, { title: 'Classes', nav: 'classes', body }));
  });
}
