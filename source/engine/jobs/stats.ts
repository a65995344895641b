// Job 'stats': per-module and per-block norms of a LoRA file (H3's computeStats) with the
// engine's kernels, cached per file (path + size + mtime) while the engine runs.
import path from 'node:path';
import {loadLoraModel} from '../../lora/model.js';
import {readHeader, TensorReader} from '../../lora/safetensors.js';
import type {LoraStats, ProgressInfo} from '../../lora/types.js';
import type {JobContext} from '../job-context.js';
import {getEngineKernels} from '../kernels/index.js';
import {registerJob} from '../registry.js';

declare module '../protocol.js' {
	interface JobKinds {
		stats: {params: {path: string}; result: LoraStats};
	}
}

export function statsCacheKey(filePath: string, sizeBytes: number, mtimeMs: number): string {
	return `stats\0${path.resolve(filePath)}\0${sizeBytes}\0${mtimeMs}`;
}

async function statsJob(params: {path: string}, ctx: JobContext): Promise<LoraStats> {
	const header = await readHeader(params.path);
	const key = statsCacheKey(header.path, header.sizeBytes, header.mtimeMs);
	const cached = ctx.cache.get(key) as LoraStats | undefined;
	if (cached) {
		ctx.progress(1, 1, 'cached');
		return cached;
	}

	const kernels = await getEngineKernels(ctx.device, ctx.log);
	const reader = await TensorReader.open(header);
	let model;
	try {
		model = await loadLoraModel(header, reader);
	} finally {
		await reader.close();
	}

	// Loaded on first use so a problem in the statistics module fails this job only, not the engine.
	const {computeStats} = await import('../../lora/stats.js');
	const stats = await computeStats(header, model, {
		kernels,
		signal: ctx.signal,
		onProgress: (progress: ProgressInfo) => {
			ctx.progress(progress.done, progress.total, progress.label);
		},
	});
	ctx.cache.set(key, stats);
	return stats;
}

registerJob('stats', statsJob);
