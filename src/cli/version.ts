// The program version: injected by the esbuild bundle (scripts/build.mjs) from package.json.
declare const __REAR_UPDATE_VERSION__: string | undefined;
export const VERSION: string = typeof __REAR_UPDATE_VERSION__ === 'string' ? __REAR_UPDATE_VERSION__ : '0.0.0-dev';
