// The engine's disk caches (base-checkpoint norms, subspace values): one JSON file per key under
// `<cacheDir>/<folder>/`, written atomically, read back as untrusted input. A cache that cannot be
// read or written only costs the next run the computation again, so neither side throws.
import {createHash} from 'node:crypto';
import {mkdir, readFile} from 'node:fs/promises';
import path from 'node:path';
import {writeFileAtomic} from '../../lora/writer.js';

/** `<cacheDir>/<folder>/<first 24 hex digits of sha256(key)>.json`. */
export function cacheFilePath(cacheDir: string, folder: string, key: string): string {
	const digest = createHash('sha256').update(key).digest('hex').slice(0, 24);
	return path.join(cacheDir, folder, `${digest}.json`);
}

/** The parsed JSON of a cache file; undefined when it is missing or not JSON. */
export async function readJsonCache(file: string): Promise<unknown> {
	try {
		return JSON.parse(await readFile(file, 'utf8')) as unknown;
	} catch {
		return undefined;
	}
}

/** Writes `content` as JSON, atomically; false when the folder is read-only or full. */
export async function saveJsonCache(file: string, content: unknown): Promise<boolean> {
	try {
		await mkdir(path.dirname(file), {recursive: true});
		await writeFileAtomic(file, [Buffer.from(JSON.stringify(content))], {overwrite: true});
		return true;
	} catch {
		return false;
	}
}
