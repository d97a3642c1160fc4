import fs from 'node:fs';
import path from 'node:path';

export const BENCH_DIR = path.resolve(__dirname, '..');
export const ROOT_DIR = path.resolve(BENCH_DIR, '..');
const ADDON_NAME = 'dsql-tunnel.linux-x64-gnu.node';
/** The release build run.sh makes for the benchmark, kept apart from the root's (debug) one. */
export const RELEASE_ADDON = path.join(BENCH_DIR, '.build', ADDON_NAME);
/** The copy of the package a run measures (see snapshotProduct). */
export const PRODUCT_DIR = path.join(BENCH_DIR, '.build', 'dsql-tunnel');
export const PRODUCT_ENTRY = path.join(PRODUCT_DIR, 'index.js');
export const PRODUCT_ADDON = path.join(PRODUCT_DIR, ADDON_NAME);
/** An app directory whose `node_modules/pg` is that copy: `require('pg')` from here gets this
 * package, as with `"pg": "npm:dsql-tunnel@…"` in an app's package.json. */
export const AS_PG_DIR = path.join(BENCH_DIR, '.build', 'as-pg');

/**
 * Copies the package as it is now (the JS facade and the release addon) to PRODUCT_DIR, and every
 * process of the run loads that copy: work going on in the tree during a run cannot change what
 * is measured halfway through.
 */
export function snapshotProduct(): void {
  fs.rmSync(PRODUCT_DIR, { recursive: true, force: true });
  fs.mkdirSync(PRODUCT_DIR, { recursive: true });
  for (const f of ['package.json', 'index.js', 'index.d.ts', 'binding.js', 'binding.d.ts', 'lib']) {
    fs.cpSync(path.join(ROOT_DIR, f), path.join(PRODUCT_DIR, f), { recursive: true });
  }
  fs.copyFileSync(RELEASE_ADDON, PRODUCT_ADDON);
  const link = path.join(AS_PG_DIR, 'node_modules', 'pg');
  fs.rmSync(AS_PG_DIR, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(link), { recursive: true });
  fs.symlinkSync(path.relative(path.dirname(link), PRODUCT_DIR), link, 'dir');
}
