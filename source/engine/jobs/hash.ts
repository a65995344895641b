// Job 'hash': full-file SHA-256, AutoV2, data-area hash and the sd-scripts hash checks of one file
// (hashes.ts), with byte progress, cached per file (path + size + mtime) while the engine runs.
import {stat} from 'node:fs/promises';
import path from 'node:path';
import {computeFileHashes, type FileHashes} from '../../lora/hashes.js';
import {errnoReason, LoraFileError} from '../../lora/safetensors.js';
import type {JobContext} from '../job-context.js';
import {registerJob} from '../registry.js';

declare module '../protocol.js' {
	interface JobKinds {
		hash: {params: {path: string}; result: FileHashes};
	}
}

export function hashCacheKey(filePath: string, sizeBytes: number, mtimeMs: number): string {
	return `hash\0${path.resolve(filePath)}\0${sizeBytes}\0${mtimeMs}`;
}

async function hashJob(params: {path: string}, ctx: JobContext): Promise<FileHashes> {
	let info;
	try {
		info = await stat(params.path);
	} catch (error) {
		throw new LoraFileError(params.path, errnoReason(error));
	}

	const key = hashCacheKey(params.path, info.size, info.mtimeMs);
	const cached = ctx.cache.get(key) as FileHashes | undefined;
	if (cached) {
		ctx.progress(1, 1, 'cached');
		return cached;
	}

	const hashes = await computeFileHashes(params.path, {
		signal: ctx.signal,
		onProgress(progress) {
			ctx.progress(progress.done, progress.total, progress.label, progress.done);
		},
	});
	// Keyed by what was hashed (the file can change between the stat above and the read).
	ctx.cache.set(hashCacheKey(params.path, hashes.sizeBytes, hashes.mtimeMs), hashes);
	return hashes;
}

registerJob('hash', hashJob);
