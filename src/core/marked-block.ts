// A marked block in a shell configuration file that rear-update owns: written whole,
// replaced whole, removed whole, never touching a line outside it. This is how install-rear
// edits /etc/rear/local.conf and how the boot hook guards /etc/rear/rescue.conf, so that
// running either twice gives the same file and --uninstall gives back the original.

const begin = (name: string): string => `# BEGIN rear-update ${name}`;
const end = (name: string): string => `# END rear-update ${name}`;

/** The lines of `text` outside the block `name`; a block without its end runs to the file's end. */
export function withoutBlock(text: string, name: string): string {
  const lines = text.split('\n');
  const out: string[] = [];
  let inside = false;
  for (const l of lines) {
    if (!inside && l.startsWith(begin(name))) {
      inside = true;
      continue;
    }
    if (inside) {
      if (l.startsWith(end(name))) inside = false;
      continue;
    }
    out.push(l);
  }
  return out.join('\n');
}

/** `text` with the block `name` holding `body` at its end (replacing any earlier block). */
export function withBlock(text: string, name: string, note: string, body: readonly string[]): string {
  let rest = withoutBlock(text, name);
  if (rest !== '' && !rest.endsWith('\n')) rest += '\n';
  return `${rest}${begin(name)} (${note})\n${body.join('\n')}\n${end(name)}\n`;
}

export const hasBlock = (text: string, name: string): boolean => text.split('\n').some((l) => l.startsWith(begin(name)));
