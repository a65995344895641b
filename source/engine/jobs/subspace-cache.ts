// Disk cache of the `subspace` recipe's values |uᵢᵀ·W·vᵢ| for one LoRA on one base checkpoint.
// Computing them reads every mapped base weight and multiplies it with the LoRA's factors (~30 s
// for SDXL on two cores), and users try several thresholds in a row: `lorascope resize --recipe
// subspace=…` run again on the same pair then costs the LoRA's decomposition only. One file per
// LoRA/base pair, valid while both files keep their path, size and mtime.
import {readdir, rm, stat} from 'node:fs/promises';
import path from 'node:path';
import type {SafetensorsHeader} from '../../lora/types.js';
import {cacheFilePath, readJsonCache, saveJsonCache} from './json-cache.js';

/**
 * Bump when the values change for the same files: a different decomposition (its singular
 * vectors) or a different formula.
 */
const subspaceCacheVersion = 1;

/** Pairs kept: each file is a number per singular value of every module (~0.6 MB for SDXL r32). */
const maxCachedPairs = 16;

type SubspaceCacheFile = {
	version: number;
	lora: [string, number, number];
	base: [string, number, number];
	values: Record<string, number[]>;
};

function identity(header: SafetensorsHeader): [string, number, number] {
	return [path.resolve(header.path), header.sizeBytes, header.mtimeMs];
}

const cacheFolder = 'base-subspace';

function fileFor(cacheDir: string, lora: SafetensorsHeader, base: SafetensorsHeader): string {
	return cacheFilePath(cacheDir, cacheFolder, JSON.stringify([path.resolve(lora.path), path.resolve(base.path)]));
}

function sameIdentity(stored: unknown, expected: [string, number, number]): boolean {
	return Array.isArray(stored) && stored.length === 3 && stored.every((value, i) => value === expected[i]);
}

/**
 * The cached values of every module in `names`, or undefined when the file is missing, damaged,
 * from another version, for files that changed since, or lacks any of the modules.
 */
export async function readSubspaceCache(cacheDir: string, lora: SafetensorsHeader, base: SafetensorsHeader, names: Iterable<string>): Promise<Map<string, number[]> | undefined> {
	const file = await readJsonCache(fileFor(cacheDir, lora, base)) as Partial<SubspaceCacheFile> | null | undefined;
	if (typeof file !== 'object' || file === null || file.version !== subspaceCacheVersion || !sameIdentity(file.lora, identity(lora))
		|| !sameIdentity(file.base, identity(base)) || typeof file.values !== 'object' || file.values === null) {
		return undefined;
	}

	// A Map: module names come from an untrusted file ("__proto__" included).
	const values = new Map<string, number[]>();
	for (const name of names) {
		const list: unknown = Object.hasOwn(file.values, name) ? file.values[name] : undefined;
		if (!Array.isArray(list) || !list.every(v => typeof v === 'number' && Number.isFinite(v) && v >= 0)) {
			return undefined;
		}

		values.set(name, list as number[]);
	}

	return values;
}

/** Saves the values (atomically) and drops the oldest pairs past the 16 kept. */
export async function saveSubspaceCache(cacheDir: string, lora: SafetensorsHeader, base: SafetensorsHeader, values: ReadonlyMap<string, readonly number[]>): Promise<void> {
	const content: SubspaceCacheFile = {version: subspaceCacheVersion, lora: identity(lora), base: identity(base), values: Object.fromEntries(values) as Record<string, number[]>};
	if (await saveJsonCache(fileFor(cacheDir, lora, base), content)) {
		await pruneOldest(path.join(cacheDir, cacheFolder)).catch(() => undefined);
	}
}

async function pruneOldest(folder: string): Promise<void> {
	const files = (await readdir(folder)).filter(name => /^[\da-f]{24}\.json$/.test(name));
	if (files.length <= maxCachedPairs) {
		return;
	}

	const dated = await Promise.all(files.map(async name => ({name, mtimeMs: (await stat(path.join(folder, name))).mtimeMs})));
	dated.sort((a, b) => b.mtimeMs - a.mtimeMs);
	await Promise.all(dated.slice(maxCachedPairs).map(async ({name}) => rm(path.join(folder, name), {force: true})));
}
