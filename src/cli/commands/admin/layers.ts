// `rear-update admin layers [CLASS]`: the hardware-class layers on the server, in the order
// they are composed under each host of a class (docs/layers.md).

import type { Command } from 'commander';
import type { Layer } from '../../../core/store/metadata.ts';
import { printJson } from '../../output.ts';
import { api, dash, leaf, printTable, SERVER_HELP, time, type AdminFlags } from './common.ts';

export function registerLayers(admin: Command): void {
  leaf(admin, 'layers [class]', 'list the hardware-class layers (all, or those of CLASS; \'*\' is every class)')
    .addHelpText('after', `
Layers of one class are listed in composition order: priority ascending, then name. What a
host of class C is served is the layers of '*' and of C in that order (at equal priority
'*' first), then the host's own configuration on top; a later layer wins a path conflict.
Publish a layer with: rear-update publish --layer NAME --class C [--priority N] --root DIR --path P
${SERVER_HELP}

Examples:
  rear-update admin layers
  rear-update admin layers typeC`)
    .action(async (cls: string | undefined, o: AdminFlags) => {
      const r = await api(o).request<{ layers: (Layer & { served: number | null })[] }>('GET', '/api/v1/layers', { query: cls !== undefined ? { class: cls } : {} });
      if (o.json) return printJson(r.body);
      printTable(['CLASS', 'PRIORITY', 'LAYER', 'SERVED', 'PINNED', 'CREATED'],
        r.body.layers.map((l) => [l.class, String(l.priority), l.name, dash(l.served), dash(l.pinned), time(l.created)]),
        cls === undefined ? 'no layers yet (rear-update publish --layer NAME --class C ...)' : `no layers of class ${cls}`);
    });
}
