// apply --keep: globs naming paths below owned directories that stay although the bundle lacks
// them (the rescue image's etc/rear/rescue.conf). One matcher, so that the plan that keeps a
// path and the status that must not call it drift agree on which paths those are.

import { minimatch } from 'minimatch';

/** The first glob that keeps `path`, or null. Dot files match like any other name. */
export function keptBy(globs: readonly string[], path: string): string | null {
  return globs.find((g) => minimatch(path, g, { dot: true })) ?? null;
}

/** For PlanOptions.keep: undefined when there is nothing to keep. */
export function keepMatcher(globs: readonly string[]): ((path: string) => boolean) | undefined {
  return globs.length ? (path: string) => keptBy(globs, path) !== null : undefined;
}

/** REAR_UPDATE_KEEP as the boot hook passes it: globs separated by white space. */
export const splitKeep = (value: string | undefined): string[] => (value ?? '').split(/\s+/).filter((g) => g !== '');
